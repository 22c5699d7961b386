"""Writes the legacy exports `tongyuan migrate` is tested on, shaped like real exports of old
county sites (TRS/WCM-style CMSs): the mess is written out on purpose, row by row.

- changsha-county.csv — 长沙县: GB18030, CRLF, a title line above a Chinese header, blank lines,
  a record whose quoted body spans lines, mixed date formats, a duplicate (and one that differs
  only in whitespace), a conflicting repeat, an unmapped path, a bad date, a missing title …
- changsha-county-mapping.csv — the explicit mapping table the CSV's config names.
- liuyang.xlsx — 浏阳市: other column names, a merged title row, a merged section row, a blank
  row, real date cells mixed with text dates, an Excel serial and a yyyymmdd number.
- wangcheng.jsonl — 望城区: TRS-style keys, the column path nested in an object, attachments as
  a list, a truncated line, an array line, blank lines.

The configs (*.toml) beside them are written by hand. Run from the repository root:

    .venv/bin/python tests/data/migration/make_samples.py
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

HERE = Path(__file__).parent

LOW_INCOME = "政务公开/重点领域/社会救助/低保"
STYLE_BODY = (
    '<p style="text-indent:2em;font-family:仿宋_GB2312;font-size:16pt">根据《长沙县最低生活保障实施办法》，'
    "现将2021年3月新增城乡低保对象名单予以公示。<br>公示期：7天。<p>"
    '<font face="宋体" color="#333333">监督电话：0731-84011234</font>'
)
SCRIPT_BODY = (
    "<div class=TRS_Editor><style>.TRS_Editor P{line-height:2;}</style>"
    '<p align=center><span style="FONT-SIZE: 12pt; mso-bidi-font-family: 宋体">长沙县财政局2021年部门预算公开</span>'
    '<script>document.write("<img src=/count.gif>")</script><p>详见附件。</div>'
)
TABLE_BODY = (
    '<table border=1 cellspacing=0 style="border-collapse:collapse"><tr><td>姓名<td>村（社区）<td>保障人数'
    "<tr><td>张某某<td>黄兴镇蓝田村<td>2</table><p class=MsoNormal><o:p>&nbsp;</o:p>"
)
MULTILINE_BODY = "<p>一、招生对象\r\n<p>年满6周岁的适龄儿童。\r\n<p>二、报名时间：8月20日至8月25日。"

CSV_HEADER = ["序号", "标题", "内容", "发布日期", "栏目", "索引号", "发布机构", "附件"]
# (序号, 标题, 内容, 发布日期, 栏目, 索引号, 发布机构, 附件); None = a blank physical line.
CSV_ROWS: list[tuple[str, ...] | None] = [
    ("1", "长沙县2021年3月新增城乡低保对象审批公示", STYLE_BODY, "2021-3-5", LOW_INCOME + "/审批公示", "000014349/2021-00101", "长沙县民政局", ""),
    (
        "2",
        "长沙县最低生活保障实施办法",
        "<p>第一条 为规范最低生活保障工作……",
        "2021年3月8日",
        LOW_INCOME + "/政策文件",
        "000014349/2021-00102",
        "长沙县民政局",
        "",
    ),
    (
        "3",
        "2021年第一季度特困人员救助供养审批结果",
        TABLE_BODY,
        "2021/03/05 10:30",
        "政务公开/重点领域/社会救助/特困供养",
        "000014349/2021-00103",
        "长沙县民政局",
        "",
    ),
    ("4", "长沙县临时救助实施细则", "<P>第一章　总则<P>", "2021.04.01", "政务公开/重点领域/社会救助/临时救助", "", "长沙县民政局", ""),
    (
        "5",
        "长沙县财政局2021年部门预算",
        SCRIPT_BODY,
        "20210410",
        "政务公开 > 重点领域 > 财政预决算 > 部门预算",
        "000014349/2021-00105",
        "长沙县财政局",
        '<a href="/uploads/2021/04/ysgk.pdf">2021年部门预算公开表</a>',
    ),
    (
        "6",
        "长沙县2022年义务教育招生工作方案",
        MULTILINE_BODY,
        "2022-08-20 09:00:00",
        "政务公开/重点领域/义务教育/招生",
        "000014349/2022-00201",
        "长沙县教育局",
        "",
    ),
    (
        "7",
        "关于某某公司建设项目环境影响报告表的批复",
        "<p>经研究，同意该项目建设。",
        "2022年9月1日 16时20分",
        "政务公开/重点领域/环境保护/环评审批",
        "000014349/2022-00202",
        "长沙市生态环境局长沙县分局",
        "批复文件|http://www.csx.gov.cn/uploads/2022/09/pf.pdf; 报告表|/uploads/2022/09/bgb.pdf",
    ),
    (
        "8",
        "星沙街道2022年9月低保审批名单公示",
        "<p>现将星沙街道2022年9月低保审批名单公示如下。",
        "2022/9/2",
        "政务公开/乡镇公开/星沙街道/低保",
        "",
        "星沙街道办事处",
        "",
    ),
    # an exact repeat of row 1
    ("9", "长沙县2021年3月新增城乡低保对象审批公示", STYLE_BODY, "2021-3-5", LOW_INCOME + "/审批公示", "000014349/2021-00101", "长沙县民政局", ""),
    None,
    ("", "", "", "", "", "", "", ""),
    ("12", "长沙县人民政府领导信息", "<p>县长：某某某", "2021-05-06", "政务公开/机构概况/领导信息", "", "长沙县人民政府办公室", ""),
    ("13", "长沙县2021年临时救助资金发放情况", "<p>略", "2021-13-45", "政务公开/重点领域/社会救助/临时救助", "", "长沙县民政局", ""),
    ("14", "", "<p>正文没有标题", "2021-05-07", LOW_INCOME + "/审批公示", "", "长沙县民政局", ""),
    ("15", "关于" + "长沙县黄花镇" * 34 + "的公示", "<p>标题过长", "2021-05-08", LOW_INCOME + "/审批公示", "", "长沙县民政局", ""),
    (
        "16",
        "长沙县2021年5月低保资金发放公示",
        "<p>单位：元<p><font color=red>合计：1,234,567",
        "2021-05-10",
        LOW_INCOME + "/资金发放",
        "000014349/2021-00116",
        "长沙县民政局",
        "http://www.csx.gov.cn/uploads/2021/05/zjff.xls http://www.csx.gov.cn/uploads/2021/05/%E6%98%8E%E7%BB%86.xls",
    ),
    ("17", "长沙县2021年特困人员供养标准", "<p>见附件", "2021-05-11", "政务公开/重点领域/社会救助/特困供养", "", "长沙县民政局", "见附件"),
    (
        "18",
        '<font color="#FF0000">长沙县2021年城乡低保标准调整通知</font>',
        "<p>自2021年7月1日起执行。",
        "2021-06-28T08:00:00+08:00",
        LOW_INCOME + "/政策文件",
        "000014349/2021-00118",
        "长沙县民政局",
        "",
    ),
    ("19", "长沙县2021年6月低保审批公示", "<p>公示如下", "", LOW_INCOME + "/审批公示", "", "长沙县民政局", ""),
    ("20", "", "", "", "", "", "", ""),
    # row 6 again, spaces around the title: still the same row
    (
        "21",
        "  长沙县2022年义务教育招生工作方案\u3000",
        MULTILINE_BODY,
        "2022-08-20 09:00:00",
        "政务公开/重点领域/义务教育/招生",
        "000014349/2022-00201",
        "长沙县教育局",
        "",
    ),
    # row 3's column, title, date and index number, but another body: not a repeat, a conflict
    (
        "22",
        "2021年第一季度特困人员救助供养审批结果",
        "<p>更正后的名单见附件。",
        "2021/03/05",
        "政务公开/重点领域/社会救助/特困供养",
        "000014349/2021-00103",
        "长沙县民政局",
        "",
    ),
    ("23", "长沙县2021年教育统计数据", "<p>全县共有义务教育学校93所。", "44378", "政务公开/重点领域/义务教育/统计数据", "", "长沙县教育局", ""),
    ("24", "长沙县2021年低保审核信息（第二批）", "<p>审核信息", "2021-07-15 16:45", LOW_INCOME + "/审核信息", "000014349/2021-00124", "长沙县民政局", ""),
    None,
    (
        "25",
        "长沙县2021年部门决算",
        "<p>详见附件",
        "2021年8月30日",
        "政务公开/重点领域/财政预决算/部门决算",
        "000014349/2021-00125",
        "长沙县财政局",
        "决算表.pdf|/uploads/2021/08/js.pdf",
    ),
    ("26", "泉塘街道2021年8月低保审批名单", "<p>名单如下", "2021-08-31", "政务公开/乡镇公开/泉塘街道/低保", "", "泉塘街道办事处", ""),
    ("27", "长沙县2021年临时救助政策解读", "<p>一图读懂", "2021-09-01", "政务公开/重点领域/社会救助/临时救助/政策解读", "", "长沙县民政局", ""),
    ("28", "长沙县2021年9月低保审批公示", "<p>公示期7天", "2021-09-30 10:00", LOW_INCOME + "/审批公示", "", "长沙县民政局", ""),
]

MAPPING_HEADER = ["旧栏目路径", "地区代码", "领域", "一级事项", "二级事项", "说明"]
MAPPING_ROWS = [
    # exact entries win over the rules: 政策文件 goes to 政策法规文件, not to the 低保 rule's 审批信息
    [LOW_INCOME + "/政策文件", "", "D14", "D14-02", "D14-02-01", "低保政策"],
    [LOW_INCOME + "/审核信息", "", "社会救助", "D14-02", "D14-02-03", "低保审核"],
    ["政务公开/乡镇公开/星沙街道/低保", "430121001", "D14", "D14-02", "D14-02-04", "星沙街道"],
    [],
    ["政务公开/乡镇公开/泉塘街道/低保", "430121002", "D14", "D14-02", "D14-02-04", "泉塘街道"],
]


def write_csv() -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("长沙县人民政府门户网站 信息导出 2023-06-30\r\n")
    writer.writerow(CSV_HEADER)
    for row in CSV_ROWS:
        if row is None:
            out.write("\r\n")
        else:
            writer.writerow(row)
    (HERE / "changsha-county.csv").write_bytes(out.getvalue().encode("gb18030"))


def write_mapping() -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(MAPPING_HEADER)
    writer.writerows(MAPPING_ROWS)
    (HERE / "changsha-county-mapping.csv").write_text(out.getvalue(), encoding="utf-8-sig")


XLSX_HEADER = ["信息ID", "信息名称", "正文", "成文日期", "发布时间", "所属栏目", "索引号", "发文机关", "相关附件"]
SPECIAL_CARE_RESULTS = (
    "LY2021002",
    "浏阳市2021年3月特困人员审批结果",
    '<span style="font-family:宋体">审批结果<span>',
    "2021-03-01",
    "2021年3月5日",
    "信息公开 » 社会救助 » 特困供养",
    "LY-2021-002",
    "浏阳市民政局",
    "",
)
# None = a blank row; a str = a section row merged across the sheet.
XLSX_ROWS: list[tuple | str | None] = [
    (
        "LY2021001",
        "浏阳市2021年城乡低保标准的通知",
        "<p style='line-height:150%'>各乡镇（街道）：<p>现将标准通知如下",
        date(2021, 2, 26),
        datetime(2021, 3, 1, 9, 30),
        "信息公开 » 社会救助 » 低保政策",
        "LY-2021-001",
        "浏阳市民政局",
        "",
    ),
    SPECIAL_CARE_RESULTS,
    (
        "LY2021003",
        "浏阳市2021年临时救助办事指南",
        "<p>申请条件……<br><br/>",
        None,
        44300,
        "信息公开 » 社会救助 » 临时救助",
        "LY-2021-003",
        "浏阳市民政局",
        '<a href="http://www.liuyang.gov.cn/u/2021/lsjz.doc">申请表</a>',
    ),
    "2021年下半年",
    (
        "LY2021004",
        "浏阳市预防接种门诊名单",
        "<ul><li>集里街道社区卫生服务中心<li>淮川街道社区卫生服务中心</ul>",
        "2021/06/01",
        20210601,
        "信息公开 » 卫生健康 » 预防接种",
        "",
        "浏阳市卫生健康局",
        "",
    ),
    None,
    (
        "LY2021005",
        "浏阳市2021年居民健康档案管理服务规范",
        "<p>规范全文",
        date(2021, 7, 1),
        datetime(2021, 7, 2, 15, 0),
        "信息公开 » 卫生健康 » 健康档案",
        "LY-2021-005",
        "浏阳市卫生健康局",
        "",
    ),
    # an exact repeat of LY2021002
    SPECIAL_CARE_RESULTS,
    # LY2021005's id again with another title: not a repeat, a conflict
    (
        "LY2021005",
        "浏阳市2021年居民健康档案管理服务规范（修订）",
        "<p>修订稿",
        date(2021, 7, 1),
        datetime(2021, 7, 9, 15, 0),
        "信息公开 » 卫生健康 » 健康档案",
        "LY-2021-005",
        "浏阳市卫生健康局",
        "",
    ),
    ("", "没有编号的信息", "<p>无ID", "2021-07-10", "2021-07-10", "信息公开 » 社会救助 » 低保政策", "", "浏阳市民政局", ""),
    ("LY2021007", "浏阳市机构职能", "<p>职能", "2021-07-11", "2021-07-11", "信息公开 » 机构概况", "", "浏阳市政府办", ""),
    ("LY2021008", "浏阳市2021年2月低保资金", "<p>资金", "2021-02-28", "2021-02-30", "信息公开 » 社会救助 » 低保政策", "", "浏阳市民政局", ""),
    ("LY2021009", "浏阳市2021年8月低保政策解读", "<p>解读", "2021-08-12", "2021-08-10", "信息公开 » 社会救助 » 低保政策", "", "浏阳市民政局", ""),
    (
        "LY2021010",
        "浏阳市2021年健康教育讲座安排",
        "<p>讲座<p>",
        None,
        "2021.09.15 14:00",
        "信息公开 » 卫生健康 » 健康教育",
        "LY-2021-010",
        "浏阳市卫生健康局",
        "",
    ),
    (
        "LY2021011",
        "浏阳市2021年第三季度特困供养审批结果",
        "<p>结果",
        "2021-09-28",
        datetime(2021, 9, 30, 17, 45),
        "信息公开 » 社会救助 » 特困供养",
        "LY-2021-011",
        "浏阳市民政局",
        "",
    ),
]


def write_xlsx() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "信息列表"
    sheet.append(["浏阳市人民政府门户网站政府信息公开目录导出（2023年6月）"])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(XLSX_HEADER))
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    sheet.append(XLSX_HEADER)
    for row in XLSX_ROWS:
        if row is None:
            sheet.append([])
        elif isinstance(row, str):
            sheet.append([row])
            here = sheet.max_row
            sheet.merge_cells(start_row=here, start_column=1, end_row=here, end_column=len(XLSX_HEADER))
        else:
            sheet.append(list(row))
            here = sheet.max_row
            for column in (4, 5):
                if isinstance(row[column - 1], (date, datetime)):
                    sheet.cell(here, column).number_format = "yyyy-mm-dd hh:mm" if isinstance(row[column - 1], datetime) else "yyyy-mm-dd"
    sheet.column_dimensions["B"].width = 48
    workbook.save(HERE / "liuyang.xlsx")


JOB_PATH = {"path": "政务公开/重点领域/就业创业/岗位信息", "name": "岗位信息"}
JSONL_LINES: list[dict | str] = [
    {
        "DOCID": 5001,
        "DOCTITLE": "望城区2021年春季招聘会岗位信息",
        "DOCHTMLCON": "<p><b>招聘单位：</b>若干<br><table><tr><td>岗位<td>人数</table>",
        "DOCRELTIME": "2021-03-05 10:00:00",
        "DOCWRITETIME": "2021-03-04",
        "CHANNEL": JOB_PATH,
        "FILENUM": "WC-2021-0001",
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
        "APPENDIX": [{"name": "岗位表.xlsx", "url": "http://www.wangcheng.gov.cn/att/2021/gwb.xlsx"}],
    },
    {
        "DOCID": 5002,
        "DOCTITLE": "望城区就业政策法规汇编",
        "DOCHTMLCON": "<div style='font-size:14px'><p>一、就业促进法",
        "DOCRELTIME": "2021年3月9日",
        "CHANNEL": {"path": "政务公开/重点领域/就业创业/政策法规"},
        "FILENUM": "WC-2021-0002",
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
        "APPENDIX": [],
    },
    "",
    {
        "DOCID": 5003,
        "DOCTITLE": "望城区2021年职业技能培训计划",
        "DOCHTMLCON": "<p>培训计划<script>alert(1)</script>",
        "DOCRELTIME": "2021/04/01",
        "CHANNEL": {"path": "政务公开/重点领域/就业创业/职业培训"},
        "FILENUM": "",
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
        "APPENDIX": "培训报名表|/att/2021/bmb.doc",
    },
    {
        "DOCID": 5004,
        "DOCTITLE": "望城区2021年义务教育招生范围",
        "DOCHTMLCON": "<p>招生范围<p>",
        "DOCRELTIME": "2021-07-01T09:00:00",
        "CHANNEL": {"path": "政务公开/重点领域/义务教育/招生范围"},
        "FILENUM": "WC-2021-0004",
        "DOCSOURCENAME": "望城区教育局",
    },
    '{"DOCID": 5005, "DOCTITLE": "望城区2021年招生计划", "DOCHTMLCON": "<p>计划',
    {
        "DOCID": 5006,
        "DOCTITLE": "望城区2021年义务教育学生资助政策",
        "DOCHTMLCON": "<p>资助政策",
        "DOCRELTIME": "2021.07.05",
        "CHANNEL": {"path": "政务公开/重点领域/义务教育/学生资助"},
        "FILENUM": "WC-2021-0006",
        "DOCSOURCENAME": "望城区教育局",
    },
    ["not", "an", "object"],
    # an exact repeat of 5002
    {
        "DOCID": 5002,
        "DOCTITLE": "望城区就业政策法规汇编",
        "DOCHTMLCON": "<div style='font-size:14px'><p>一、就业促进法",
        "DOCRELTIME": "2021年3月9日",
        "CHANNEL": {"path": "政务公开/重点领域/就业创业/政策法规"},
        "FILENUM": "WC-2021-0002",
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
        "APPENDIX": [],
    },
    {
        "DOCID": 5007,
        "DOCTITLE": "望城区领导之窗",
        "DOCHTMLCON": "<p>区长",
        "DOCRELTIME": "2021-08-01",
        "CHANNEL": {"path": "政务公开/领导之窗"},
        "DOCSOURCENAME": "望城区政府办",
    },
    {
        "DOCID": 5008,
        "DOCTITLE": "望城区2021年秋季招聘会岗位信息",
        "DOCHTMLCON": "<p>岗位",
        "DOCRELTIME": "2021年9月31日",
        "CHANNEL": JOB_PATH,
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
    },
    {
        "DOCID": 5009,
        "DOCTITLE": "望城区2021年第四季度岗位信息",
        "DOCHTMLCON": "<p>岗位",
        "DOCRELTIME": "2021-10-08 08:30",
        "DOCWRITETIME": "2021-10-09",
        "CHANNEL": JOB_PATH,
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
    },
    {
        "DOCID": 5010,
        "DOCTITLE": "望城区2021年公益性岗位信息",
        "DOCHTMLCON": "<p>公益性岗位",
        "DOCRELTIME": "2021-11-02",
        "CHANNEL": JOB_PATH,
        "FILENUM": "WC-2021-0010" + "-" * 60,
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
    },
    {
        "DOCID": 5011,
        "DOCTITLE": "望城区2021年12月岗位信息",
        "DOCHTMLCON": "<p>十二月岗位",
        "DOCRELTIME": "20211201",
        "CHANNEL": JOB_PATH,
        "FILENUM": "WC-2021-0011",
        "DOCSOURCENAME": "望城区人力资源和社会保障局",
        "APPENDIX": "http://www.wangcheng.gov.cn/att/2021/12.xlsx",
    },
    "   ",
]


def write_jsonl() -> None:
    lines = [entry if isinstance(entry, str) else json.dumps(entry, ensure_ascii=False) for entry in JSONL_LINES]
    (HERE / "wangcheng.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_csv()
    write_mapping()
    write_xlsx()
    write_jsonl()
    print(f"wrote the samples under {HERE}")
