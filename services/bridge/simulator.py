"""A stand-in for the provincial integrated government-service platform (政务服务一体化平台).

The real platform is not reachable from here, so this serves the same kind of API with items
spread over Changsha's units, and can be told to misbehave the ways real platforms do:

    GET  /api/v1/items?updated_since=&page=&page_size=   paged change list (oldest change first)
    GET  /api/v1/items/{实施编码}                          the item with its full 办事指南 (404 once deleted)
    POST webhook → the registered URL on every change, signed (HMAC-SHA256, timestamp, nonce)

Faults (each a probability per response, see `Faults`): timeouts, 500s, truncated bodies,
malformed records, a page served twice, items shuffled within a page, an item deleted between
the list and the detail, a cursor (and clock) that goes backwards. `/_sim/*` lets tests and the
benchmark edit, revoke and delete items, set faults and read the platform's true state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

import httpx
import structlog
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from contracts.catalog import HIGH_TECH_ZONE_CODE, Region, regions_of_city
from contracts.service_items import credit_code_check, organization_code_check

from .webhooks import sign

log = structlog.get_logger("tongyuan.bridge.simulator")

# The platform's own area code for 长沙高新区, which has no statistical code (our 4301GX); the
# bridge's mapping data carries the alias. Made up for the simulator, like the platform would.
HIGH_TECH_ZONE_AREA = "430190000000"
PLATFORM = "hunan-zwfw"
ROADS = ("人民路", "建设路", "解放路", "韶山路", "芙蓉路", "五一大道", "劳动路", "车站路", "雨花路", "湘江路", "金星路", "开元路")
HOURS = "周一至周五 上午9:00—12:00，下午13:30—17:30（法定节假日除外）"
COUNTY_HOURS = "周一至周五 上午8:30—12:00，下午13:30—17:00；周六上午9:00—12:00（延时服务，法定节假日除外）"


@dataclass(frozen=True)
class Template:
    """One basic item (基本编码) as every unit at `level` implements it."""

    seq: int
    item_type: str
    name: str
    level: str  # "township" | "county"
    bureau: str  # "" for a township's own office, else the county bureau (民政局 …)
    conditions: tuple[str, ...]
    materials: tuple[tuple, ...]  # (name, required, form, copies, source, blank form?)
    process: tuple[tuple[str, str, str], ...]
    legal: str
    promised: str
    basis: tuple[str, ...]
    faq: tuple[tuple[str, str], ...] = ()
    fee: tuple[bool, str, str] = (False, "", "")
    online: bool = True

    @property
    def basic_code(self) -> str:
        return f"43{self.item_type}{self.seq:04d}000000"


ID_CARD = ("居民身份证", True, "原件", 1, "公安部门核发", False)
HUKOU = ("居民户口簿", True, "原件", 1, "公安部门核发", False)
LICENSE = ("营业执照", True, "电子证照", 1, "市场监管部门核发", False)

TEMPLATES: tuple[Template, ...] = (
    Template(
        1,
        "07",
        "最低生活保障对象认定",
        "township",
        "",
        ("具有本县（市、区）户籍，共同生活的家庭成员人均收入低于当地城乡低保标准", "家庭财产状况符合当地低保家庭财产状况规定", "申请人以家庭为单位提出申请"),
        (
            ("最低生活保障申请书", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            HUKOU,
            ("家庭经济状况核对授权书", True, "原件", 1, "申请人自备", True),
            ("残疾证、病历等特殊情况证明材料", False, "复印件", 1, "相关部门核发", False),
        ),
        (
            ("申请", "申请人向户籍所在地乡镇人民政府（街道办事处）提出书面申请", ""),
            ("受理", "材料齐全的当场受理；不齐全的一次性告知需补正材料", "当场"),
            ("调查核实", "入户调查、邻里走访、信息核对，并在村（社区）公示7天", "15个工作日"),
            ("审核确认", "乡镇人民政府（街道办事处）作出审核确认决定", "5个工作日"),
            ("公示发放", "确认结果在村（社区）长期公示，按月发放低保金", ""),
        ),
        "30个工作日",
        "20个工作日",
        ("《社会救助暂行办法》（国务院令第649号）第九条至第十一条", "《湖南省最低生活保障工作规程》"),
        (
            ("外出务工人员可以在居住地申请低保吗？", "低保原则上在户籍所在地申请；持有居住证的，可按当地规定在居住地申请。"),
            ("审批期间收入发生变化怎么办？", "应当及时向受理窗口报告，按变化后的情况重新核定。"),
        ),
    ),
    Template(
        2,
        "07",
        "特困人员救助供养认定",
        "township",
        "",
        ("无劳动能力、无生活来源、无法定赡养抚养扶养义务人或者其法定义务人无履行义务能力的老年人、残疾人以及未满16周岁的未成年人",),
        (
            ("特困人员救助供养申请书", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            HUKOU,
            ("残疾证或者劳动能力评估材料", False, "复印件", 1, "残联或评估机构", False),
        ),
        (
            ("申请", "本人或委托村（居）民委员会向乡镇人民政府（街道办事处）提出申请", ""),
            ("审核", "调查核实并在村（社区）公示", "20个工作日"),
            ("确认", "乡镇人民政府（街道办事处）作出认定决定", "10个工作日"),
        ),
        "30个工作日",
        "20个工作日",
        ("《社会救助暂行办法》第十四条至第十七条", "《特困人员认定办法》（民发〔2021〕43号）"),
        (("特困人员可以选择集中供养吗？", "具备生活自理能力的，可自愿选择在家分散供养或到供养服务机构集中供养。"),),
    ),
    Template(
        3,
        "05",
        "临时救助金给付",
        "township",
        "",
        ("因火灾、交通事故等意外事件，家庭成员突发重大疾病等原因，导致基本生活暂时出现严重困难的家庭或者个人",),
        (
            ("临时救助申请书", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            ("困难情况证明材料（医疗票据、事故证明等）", True, "复印件", 1, "申请人自备", False),
        ),
        (
            ("申请", "向乡镇人民政府（街道办事处）提出申请；情况紧急的可先行救助", ""),
            ("审核", "调查核实家庭经济状况和困难情形", "5个工作日"),
            ("审批发放", "符合条件的给予临时救助，金额在规定标准内的由乡镇（街道）审批", "3个工作日"),
        ),
        "20个工作日",
        "8个工作日",
        ("《社会救助暂行办法》第四十七条至第五十条",),
    ),
    Template(
        4,
        "05",
        "高龄老人补贴（长寿保健金）申领",
        "township",
        "",
        ("具有本市户籍、年满80周岁的老年人",),
        (
            ("高龄补贴申请表", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            ("一寸免冠照片", True, "原件", 2, "申请人自备", False),
            ("本人银行账户（社会保障卡）", True, "复印件", 1, "申请人自备", False),
        ),
        (
            ("申请", "老年人或其代理人向户籍所在地村（社区）或乡镇（街道）提出申请", ""),
            ("审核", "乡镇（街道）审核并公示", "5个工作日"),
            ("发放", "县级民政部门审批后按月发放至社会保障卡", ""),
        ),
        "15个工作日",
        "10个工作日",
        ("《中华人民共和国老年人权益保障法》第三十三条", "《湖南省老年人权益保障条例》"),
        (("补贴从什么时候开始发放？", "自审批通过的次月起发放。"),),
    ),
    Template(
        5,
        "20",
        "城乡居民基本养老保险参保登记",
        "township",
        "",
        ("年满16周岁（不含在校学生），非国家机关和事业单位工作人员，不属于职工基本养老保险覆盖范围的城乡居民，可在户籍地参加城乡居民养老保险",),
        (ID_CARD, HUKOU, ("城乡居民基本养老保险参保登记表", True, "原件", 1, "申请人自备", True)),
        (("申请", "本人到户籍所在地村（社区）或乡镇（街道）社保服务窗口办理，也可网上办理", ""), ("登记", "经办人员核对信息后即时录入参保", "即办")),
        "即办",
        "即办",
        ("《中华人民共和国社会保险法》第二十条至第二十二条", "《国务院关于建立统一的城乡居民基本养老保险制度的意见》（国发〔2014〕8号）"),
        (("每年可以选择哪些缴费档次？", "按省定缴费档次自主选择，多缴多得。"),),
    ),
    Template(
        6,
        "20",
        "就业失业登记",
        "township",
        "",
        ("在法定劳动年龄内、有劳动能力和就业要求、处于无业状态的城乡劳动者可办理失业登记；已就业人员办理就业登记",),
        (ID_CARD, ("就业创业证（如有）", False, "原件", 1, "人社部门核发", False)),
        (("申请", "到常住地公共就业服务机构或街道（乡镇）便民服务中心提出申请", ""), ("登记", "核对信息后办理登记并发放就业创业证", "即办")),
        "即办",
        "即办",
        ("《就业服务与就业管理规定》（人力资源社会保障部令第28号）第六章",),
    ),
    Template(
        7,
        "05",
        "困难残疾人生活补贴和重度残疾人护理补贴申请",
        "township",
        "",
        ("具有本县（市、区）户籍，持有第二代残疾人证，并符合困难或重度残疾条件",),
        (("残疾人两项补贴申请审批表", True, "原件", 1, "申请人自备", True), ID_CARD, ("中华人民共和国残疾人证", True, "原件", 1, "残联核发", False)),
        (
            ("申请", "向户籍所在地乡镇人民政府（街道办事处）提出申请", ""),
            ("初审", "乡镇（街道）初审", "5个工作日"),
            ("审核审定", "县级残联审核、民政部门审定", "10个工作日"),
        ),
        "20个工作日",
        "15个工作日",
        ("《国务院关于全面建立困难残疾人生活补贴和重度残疾人护理补贴制度的意见》（国发〔2015〕52号）",),
    ),
    Template(
        8,
        "01",
        "食品经营许可",
        "county",
        "市场监督管理局",
        ("具有与经营的食品品种、数量相适应的经营场所", "具有专职或者兼职的食品安全管理人员和保证食品安全的规章制度", "具有合理的设备布局和工艺流程"),
        (
            ("食品经营许可申请书", True, "原件", 1, "申请人自备", True),
            LICENSE,
            ("法定代表人（负责人）身份证明", True, "复印件", 1, "申请人自备", False),
            ("与食品经营相适应的主要设备设施布局、操作流程等文件", True, "原件", 1, "申请人自备", False),
            ("食品安全自查、从业人员健康管理等制度", True, "原件", 1, "申请人自备", False),
        ),
        (
            ("申请", "网上或窗口提交申请材料", ""),
            ("受理", "材料齐全、符合法定形式的予以受理", "当场"),
            ("审查", "书面审查，必要时现场核查", "5个工作日"),
            ("决定", "作出准予或不予许可决定", "3个工作日"),
            ("发证", "准予许可的颁发食品经营许可证", ""),
        ),
        "20个工作日",
        "5个工作日",
        ("《中华人民共和国食品安全法》第三十五条", "《食品经营许可和备案管理办法》（国家市场监督管理总局令第78号）"),
        (("仅销售预包装食品需要办理许可吗？", "仅销售预包装食品的，实行备案管理，无需取得许可。"),),
    ),
    Template(
        9,
        "01",
        "药品零售企业许可",
        "county",
        "市场监督管理局",
        ("具有依法经过资格认定的药师或者其他药学技术人员", "具有与所经营药品相适应的营业场所、设备、仓储设施和卫生环境", "具有保证药品质量的规章制度"),
        (
            ("药品经营许可证申请表", True, "原件", 1, "申请人自备", True),
            LICENSE,
            ("执业药师注册证", True, "复印件", 1, "药监部门核发", False),
            ("经营场所、仓库平面布置图及房屋产权或使用权证明", True, "复印件", 1, "申请人自备", False),
        ),
        (
            ("申请", "提交申请材料", ""),
            ("受理", "审查材料", "5个工作日"),
            ("现场检查", "组织现场检查验收", "15个工作日"),
            ("决定", "作出许可决定并发证", "10个工作日"),
        ),
        "30个工作日",
        "15个工作日",
        ("《中华人民共和国药品管理法》第五十一条至第五十三条", "《药品经营和使用质量监督管理办法》"),
    ),
    Template(
        10,
        "01",
        "乡村建设规划许可证核发",
        "county",
        "自然资源局",
        ("在乡、村庄规划区内进行乡镇企业、乡村公共设施和公益事业建设", "符合乡、村庄规划"),
        (
            ("乡村建设规划许可申请表", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            ("建设用地权属证明", True, "复印件", 1, "申请人自备", False),
            ("建设工程设计方案或农房设计图", True, "原件", 2, "申请人自备", False),
            ("村民委员会意见", True, "原件", 1, "村民委员会", False),
        ),
        (
            ("申请", "向乡镇人民政府提出申请", ""),
            ("审查", "乡镇人民政府报县级自然资源主管部门审查", "10个工作日"),
            ("核发", "核发乡村建设规划许可证", "5个工作日"),
        ),
        "20个工作日",
        "10个工作日",
        ("《中华人民共和国城乡规划法》第四十一条", "《湖南省实施〈中华人民共和国城乡规划法〉办法》"),
    ),
    Template(
        11,
        "01",
        "占用、挖掘城市道路审批",
        "county",
        "住房和城乡建设局",
        ("因工程建设确需占用、挖掘城市道路", "有施工方案和交通疏导方案"),
        (
            ("城市道路占用挖掘申请表", True, "原件", 1, "申请人自备", True),
            ("施工图纸及施工方案", True, "原件", 1, "申请人自备", False),
            ("公安交通管理部门意见", True, "原件", 1, "公安交警部门", False),
        ),
        (("申请", "提交申请材料", ""), ("审查", "现场勘察、会签", "5个工作日"), ("决定", "作出许可决定", "2个工作日")),
        "20个工作日",
        "7个工作日",
        ("《城市道路管理条例》第三十条、第三十三条",),
        fee=(True, "按占用面积和期限收取城市道路占用费、挖掘修复费，具体以核定为准", "《城市道路管理条例》第三十七条；省物价局、财政厅相关收费标准"),
    ),
    Template(
        12,
        "01",
        "燃气经营许可证核发",
        "county",
        "住房和城乡建设局",
        (
            "符合燃气发展规划要求",
            "有符合国家标准的燃气气源和燃气设施",
            "有固定的经营场所、完善的安全管理制度和健全的经营方案",
            "企业主要负责人、安全生产管理人员以及运行、维护和抢修人员经专业培训并考核合格",
        ),
        (
            ("燃气经营许可申请书", True, "原件", 1, "申请人自备", True),
            LICENSE,
            ("气源证明", True, "复印件", 1, "申请人自备", False),
            ("燃气设施竣工验收文件", True, "复印件", 1, "申请人自备", False),
            ("安全评价报告", True, "原件", 1, "评价机构", False),
        ),
        (("申请", "提交申请材料", ""), ("审查", "材料审查和现场核查", "10个工作日"), ("决定", "作出许可决定", "5个工作日")),
        "20个工作日",
        "15个工作日",
        ("《城镇燃气管理条例》第十五条", "《燃气经营许可管理办法》（建城规〔2019〕2号）"),
    ),
    Template(
        13,
        "07",
        "公共租赁住房承租资格审核",
        "county",
        "住房和城乡建设局",
        ("本地城镇户籍住房困难家庭或在本地稳定就业的新市民、青年人", "家庭收入、财产符合当年公布的准入标准"),
        (
            ("公共租赁住房申请表", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            HUKOU,
            ("收入证明或劳动合同", True, "原件", 1, "申请人自备", False),
            ("无房证明（不动产登记查询结果）", True, "原件", 1, "不动产登记机构", False),
        ),
        (
            ("申请", "向户籍所在地或工作单位所在地街道（乡镇）提出申请", ""),
            ("初审", "街道（乡镇）初审并公示", "10个工作日"),
            ("复审", "县级住房保障部门复审", "10个工作日"),
            ("公示", "审核结果公示", "5个工作日"),
        ),
        "30个工作日",
        "25个工作日",
        ("《公共租赁住房管理办法》（住房和城乡建设部令第11号）第七条至第十二条",),
    ),
    Template(
        14,
        "20",
        "法律援助申请受理审查",
        "county",
        "司法局",
        ("因经济困难没有委托代理人的公民，就依法请求给予社会保险待遇、最低生活保障待遇或者社会救助等事项", "符合法律援助经济困难标准"),
        (
            ("法律援助申请表", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            ("经济困难状况说明表", True, "原件", 1, "申请人自备", True),
            ("与所申请法律援助事项有关的证件、证明材料", True, "复印件", 1, "申请人自备", False),
        ),
        (
            ("申请", "向法律援助机构提出申请", ""),
            ("审查", "审查是否符合法律援助条件", "7个工作日"),
            ("指派", "决定给予法律援助的，3日内指派法律援助人员", "3日"),
        ),
        "7个工作日",
        "5个工作日",
        ("《中华人民共和国法律援助法》第三十一条至第四十四条",),
        (("哪些人申请法律援助免予核查经济困难状况？", "无固定生活来源的未成年人、老年人、残疾人等特定群体，社会救助、司法救助或者优抚对象等。"),),
    ),
    Template(
        15,
        "01",
        "建设项目环境影响评价文件审批",
        "county",
        "生态环境分局",
        ("建设项目类型及其选址、布局、规模等符合环境保护法律法规和相关法定规划", "所在区域环境质量满足要求"),
        (
            ("建设项目环境影响报告书（表）审批申请书", True, "原件", 1, "申请人自备", True),
            ("建设项目环境影响报告书（表）", True, "原件", 2, "评价单位", False),
            ("公众参与说明（报告书项目）", False, "原件", 1, "申请人自备", False),
        ),
        (("申请", "网上提交申请材料", ""), ("受理", "材料审查", "当场"), ("技术评估", "组织技术评估", "15个工作日"), ("审批", "作出审批决定", "10个工作日")),
        "60日（报告书）/30日（报告表）",
        "30个工作日（报告书）/15个工作日（报告表）",
        ("《中华人民共和国环境影响评价法》第二十二条", "《建设项目环境保护管理条例》第九条"),
    ),
    Template(
        16,
        "05",
        "农机购置补贴",
        "county",
        "农业农村局",
        ("从事农业生产的个人和农业生产经营组织", "购置列入补贴范围的农业机械"),
        (
            ("农机购置补贴申请表", True, "原件", 1, "申请人自备", True),
            ID_CARD,
            ("购机发票", True, "原件", 1, "经销企业开具", False),
            ("本人银行账户", True, "复印件", 1, "申请人自备", False),
        ),
        (
            ("购机", "自主购机并付款", ""),
            ("申请", "通过补贴辅助管理系统或窗口申请", ""),
            ("核验", "县级农业农村部门核验、公示", "15个工作日"),
            ("兑付", "财政部门兑付补贴资金", ""),
        ),
        "无",
        "30个工作日",
        ("《中华人民共和国农业机械化促进法》第二十七条", "《农业机械购置与应用补贴实施意见》"),
    ),
    Template(
        17,
        "10",
        "养老机构备案",
        "county",
        "民政局",
        ("设立养老机构，应当向县级以上人民政府民政部门备案", "依法登记为法人"),
        (
            ("养老机构备案书", True, "原件", 1, "申请人自备", True),
            ("养老机构备案承诺书", True, "原件", 1, "申请人自备", True),
            ("登记证书或营业执照", True, "复印件", 1, "登记机关核发", False),
            ("消防、食品等合规证明", False, "复印件", 1, "相关部门", False),
        ),
        (("申请", "网上或窗口提交备案材料", ""), ("备案", "材料齐全的当场予以备案并出具回执", "即办")),
        "即办",
        "即办",
        ("《中华人民共和国老年人权益保障法》第四十三条", "《养老机构管理办法》（民政部令第66号）第九条"),
    ),
    Template(
        18,
        "07",
        "出生登记",
        "county",
        "公安分局",
        ("婴儿出生后一个月以内，由户主、亲属、抚养人或者邻居向婴儿常住地户口登记机关申报出生登记",),
        (
            ("出生医学证明", True, "原件", 1, "助产机构签发", False),
            ("父母双方居民身份证、居民户口簿", True, "原件", 1, "公安部门核发", False),
            ("结婚证", False, "原件", 1, "民政部门核发", False),
        ),
        (("申请", "到户籍派出所或通过“出生一件事”联办申请", ""), ("审核登记", "审核后即时办理", "即办")),
        "即办",
        "即办",
        ("《中华人民共和国户口登记条例》第七条",),
        online=True,
    ),
    Template(
        19,
        "01",
        "出版物零售单位和个体工商户设立、变更审批",
        "county",
        "文化旅游广电体育局",
        ("有确定的名称、经营范围", "有与出版物零售业务相适应的设备和固定的经营场所"),
        (("出版物经营许可申请书", True, "原件", 1, "申请人自备", True), LICENSE, ("经营场所使用证明", True, "复印件", 1, "申请人自备", False)),
        (("申请", "提交申请材料", ""), ("审查", "书面审查", "10个工作日"), ("决定", "作出许可决定", "5个工作日")),
        "20个工作日",
        "3个工作日",
        ("《出版管理条例》第三十七条", "《出版物市场管理规定》第十条"),
    ),
    Template(
        20,
        "01",
        "卫星电视广播地面接收设施安装服务许可",
        "county",
        "文化旅游广电体育局",
        ("具有独立法人资格，有一定的专业技术人员和安装能力",),
        (("卫星地面接收设施安装服务许可申请表", True, "原件", 1, "申请人自备", True), LICENSE, ("技术人员资质证明", True, "复印件", 1, "申请人自备", False)),
        (("申请", "提交申请材料", ""), ("审核", "审核并实地考察", "15个工作日"), ("决定", "作出许可决定", "5个工作日")),
        "20个工作日",
        "10个工作日",
        ("《卫星电视广播地面接收设施管理规定》", "《卫星电视广播地面接收设施安装服务暂行办法》"),
    ),
    Template(
        21,
        "02",
        "对随地吐痰、便溺，乱扔果皮、纸屑和烟头等废弃物的行政处罚",
        "county",
        "城市管理和综合执法局",
        ("违反城市市容和环境卫生管理规定",),
        (("现场检查（勘验）笔录", True, "原件", 1, "执法机关制作", False),),
        (("立案", "发现违法行为后立案", ""), ("调查", "调查取证，告知当事人陈述申辩权利", ""), ("决定", "作出行政处罚决定并送达", "")),
        "90日",
        "30日",
        ("《城市市容和环境卫生管理条例》第三十四条",),
        online=False,
    ),
)


@dataclass
class Faults:
    """Probabilities per response; `hang_seconds` is how long a timed-out request hangs."""

    timeout: float = 0.0
    error: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    duplicate_page: float = 0.0
    reorder: float = 0.0
    delete_between: float = 0.0
    cursor_backwards: float = 0.0
    hang_seconds: float = 5.0

    @classmethod
    def every_kind(cls, rate: float, hang_seconds: float = 1.0) -> "Faults":
        return cls(**{f.name: rate for f in fields(cls) if f.name != "hang_seconds"}, hang_seconds=hang_seconds)

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """`timeout=0.05,error=0.1` or `all=0.05`."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name == "all":
                return cls.every_kind(float(value))
            if name not in {f.name for f in fields(cls)}:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(f.name for f in fields(cls))}, all")
            values[name] = float(value)
        return cls(**values)


@dataclass
class SimItem:
    document: dict  # the ServiceItem as JSON
    status: str  # active | revoked
    version: int
    updated_at: datetime

    def summary(self) -> dict:
        return {
            "implementation_code": self.document["implementation_code"],
            "name": self.document["name"],
            "item_type": self.document["item_type"],
            "status": self.status,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }

    def detail(self) -> dict:
        return {**self.document, "status": self.status, "version": self.version, "updated_at": self.updated_at.isoformat()}


def _department(region: Region, template: Template, county_name: str) -> str:
    if template.level == "township":
        return f"{region.name}办事处" if region.name.endswith("街道") else f"{region.name}人民政府"
    return f"{county_name}{template.bureau}"


def _credit_code(rng: random.Random, area6: str) -> str:
    body = f"{rng.randrange(10**7, 10**8)}"
    org = body + organization_code_check(body)
    first17 = f"11{area6}{org}"  # 1 = 机构编制, 1 = 机关
    return first17 + credit_code_check(first17)


def _area_code(region: Region) -> str:
    if region.code == HIGH_TECH_ZONE_CODE:
        return HIGH_TECH_ZONE_AREA
    return region.code.ljust(12, "0")


def seed_items(count: int, *, seed: int = 20260302, base_url: str = "http://127.0.0.1:8700", regions: tuple[Region, ...] | None = None) -> list[dict]:
    """`count` items (at most one per basic item and unit), deterministic for a seed."""
    regions = regions or regions_of_city("4301")
    rng = random.Random(seed)
    by_code = {r.code: r for r in regions}
    counties = [r for r in regions if r.level == "county"]
    townships = [r for r in regions if r.level == "township"]
    pairs = [(t, r) for t in TEMPLATES for r in (townships if t.level == "township" else counties)]
    rng.shuffle(pairs)
    chosen = sorted(pairs[:count], key=lambda p: (p[1].code, p[0].seq))
    credit: dict[str, str] = {}
    items = []
    for template, region in chosen:
        county = region if region.level == "county" else by_code[region.parent_code]
        department = _department(region, template, county.name)
        area = _area_code(region)
        if department not in credit:
            credit[department] = _credit_code(rng, (area[:6] if area[:6].isdigit() else "430100"))
        code = f"{template.basic_code}-{area}-000-{credit[department]}-1-00"
        items.append(_document(template, region, county, department, code, credit[department], area, rng, base_url))
    return items


def _document(
    template: Template, region: Region, county: Region, department: str, code: str, credit: str, area: str, rng: random.Random, base_url: str
) -> dict:
    township = template.level == "township"
    road = rng.choice(ROADS)
    place = (
        f"{county.name}{region.name}便民服务中心（{road}{rng.randrange(1, 300)}号）{rng.randrange(1, 8)}号窗口"
        if township
        else f"{county.name}政务服务中心（{road}{rng.randrange(1, 500)}号）{rng.randrange(1, 4)}楼{template.bureau}窗口"
    )
    materials = []
    for index, (name, required, form, copies, source, blank) in enumerate(template.materials, start=1):
        materials.append(
            {
                "name": name,
                "required": required,
                "form": form,
                "copies": copies,
                "source": source,
                "blank_form_url": f"{base_url}/forms/{template.basic_code}-{index}.docx" if blank else None,
                "sample_url": f"{base_url}/forms/{template.basic_code}-{index}-sample.pdf" if blank else None,
                "note": "",
            }
        )
    return {
        "item_type": template.item_type,
        "basic_code": template.basic_code,
        "implementation_code": code,
        "area_code": area,
        "name": template.name,
        "department": department,
        "department_credit_code": credit,
        "guide": {
            "conditions": list(template.conditions),
            "materials": materials,
            "process": [{"name": n, "description": d, "time_limit": t} for n, d, t in template.process],
            "legal_time_limit": template.legal,
            "promised_time_limit": template.promised,
            "place": place,
            "hours": HOURS if township else COUNTY_HOURS,
            "fees": {"charged": template.fee[0], "standard": template.fee[1] or "不收费", "basis": template.fee[2]},
            "basis": list(template.basis),
            "consult_phone": f"0731-8{rng.randrange(10**6, 10**7)}",
            "complaint_phone": "12345（长沙市12345政务服务便民热线）",
            "faq": [{"question": q, "answer": a} for q, a in template.faq],
            "online_url": f"{base_url}/apply/{code}" if template.online else None,
        },
    }


def item_fingerprint(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class WebhookSender:
    """Delivers change notices in order from one thread; retries a failed delivery a few times
    (with the same nonce and signature, as platforms do), then gives up: polling catches up."""

    def __init__(self, url: str, secret: str, *, attempts: int = 3, timeout: float = 2.0):
        self.url, self.secret, self.attempts = url, secret, attempts
        self.client = httpx.Client(timeout=timeout)
        self.queue: queue.Queue[dict | None] = queue.Queue()
        self.delivered = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
        self.thread.start()

    def notify(self, notice: dict) -> None:
        self.queue.put(notice)

    def _run(self) -> None:
        while (notice := self.queue.get()) is not None:
            body = json.dumps(notice, ensure_ascii=False).encode()
            headers = {"content-type": "application/json", **sign(body, self.secret, timestamp=int(time.time()), nonce=uuid.uuid4().hex)}
            for attempt in range(self.attempts):
                try:
                    response = self.client.post(self.url, content=body, headers=headers)
                    if response.status_code < 500:
                        self.delivered += 1
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1 * 2**attempt)
            else:
                self.failed += 1

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(5)
        self.client.close()


class Platform:
    """The platform's state and behaviour, usable in-process (tests) or behind `create_app`."""

    def __init__(self, items: list[dict], *, faults: Faults | None = None, seed: int = 1, platform: str = PLATFORM, clock=None):
        self.platform = platform
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.lock = threading.RLock()
        self.webhooks: WebhookSender | None = None
        self.skew = timedelta(0)  # a clock that went backwards
        self._last = datetime(2000, 1, 1, tzinfo=timezone.utc)
        self.items: dict[str, SimItem] = {}
        start = self._now()
        for document in items:
            self.items[document["implementation_code"]] = SimItem(document, "active", 1, start)
        self.fault_log: dict[str, int] = {}

    # --- time -----------------------------------------------------------------------------
    def _now(self) -> datetime:
        now = self.clock() - self.skew
        if self.skew == timedelta(0):
            now = max(now, self._last + timedelta(microseconds=1))
        self._last = max(self._last, now)
        return now

    def _roll(self, kind: str) -> bool:
        hit = self.rng.random() < getattr(self.faults, kind)
        if hit:
            self.fault_log[kind] = self.fault_log.get(kind, 0) + 1
        return hit

    # --- changes (what clerks do on the platform) -----------------------------------------
    def _changed(self, code: str, event: str) -> SimItem | None:
        held = self.items.get(code)
        if self._roll("cursor_backwards"):
            # The platform's clock jumps back: this change gets a time before changes already listed.
            self.skew = timedelta(minutes=self.rng.randrange(2, 30))
        if held is not None:
            held.version += 1
            held.updated_at = self._now()
        self.skew = timedelta(0)
        if self.webhooks is not None:
            self.webhooks.notify(
                {
                    "event": event,
                    "platform": self.platform,
                    "implementation_code": code,
                    "version": held.version if held else None,
                    "updated_at": held.updated_at.isoformat() if held else self._now().isoformat(),
                }
            )
        return held

    def edit(self, code: str, *, note: str | None = None, changes: dict | None = None) -> dict:
        """Change an item's guide: `note` adds a 受理条件 line (findable text), `changes` sets guide
        fields; with neither, a realistic edit is picked at random."""
        with self.lock:
            held = self.items[code]
            guide = json.loads(json.dumps(held.document["guide"]))
            if changes:
                guide.update(changes)
            elif note:
                guide["conditions"] = [*guide["conditions"], note]
            else:
                self._random_edit(guide)
            held.document = {**held.document, "guide": guide}
            self._changed(code, "item.updated")
            return held.detail()

    def _random_edit(self, guide: dict) -> None:
        choice = self.rng.randrange(4)
        if choice == 0:
            days = self.rng.randrange(1, 15)
            guide["promised_time_limit"] = f"{days}个工作日"
        elif choice == 1:
            guide["consult_phone"] = f"0731-8{self.rng.randrange(10**6, 10**7)}"
        elif choice == 2:
            guide["faq"] = [
                *guide["faq"],
                {"question": f"材料不齐全可以先受理吗？（{self.rng.randrange(10**6)}）", "answer": "实行容缺受理，次要材料可在办结前补齐。"},
            ]
        elif guide["materials"]:
            index = self.rng.randrange(len(guide["materials"]))
            material = guide["materials"][index]
            guide["materials"][index] = {**material, "copies": material["copies"] % 3 + 1}

    def revoke(self, code: str) -> None:
        with self.lock:
            self.items[code].status = "revoked"
            self._changed(code, "item.revoked")

    def reinstate(self, code: str) -> None:
        with self.lock:
            self.items[code].status = "active"
            self._changed(code, "item.updated")

    def delete(self, code: str) -> None:
        """Hard delete: the item vanishes from list and detail (polling cannot see it go)."""
        with self.lock:
            self.items.pop(code, None)
            self._changed(code, "item.deleted")

    def add(self, document: dict) -> None:
        with self.lock:
            code = document["implementation_code"]
            self.items[code] = SimItem(document, "active", 0, self._now())
            self._changed(code, "item.created")

    def churn(self, count: int) -> dict[str, int]:
        """Random edits (mostly), revocations, reinstatements and deletions."""
        done: dict[str, int] = {}
        with self.lock:
            codes = sorted(self.items)
            for _ in range(count):
                if not codes:
                    break
                code = self.rng.choice(codes)
                roll = self.rng.random()
                if roll < 0.75:
                    self.edit(code)
                    kind = "edited"
                elif roll < 0.88 and self.items[code].status == "active":
                    self.revoke(code)
                    kind = "revoked"
                elif roll < 0.94 and self.items[code].status == "revoked":
                    self.reinstate(code)
                    kind = "reinstated"
                else:
                    self.delete(code)
                    codes.remove(code)
                    kind = "deleted"
                done[kind] = done.get(kind, 0) + 1
        return done

    def state(self) -> dict[str, dict]:
        """The truth, for reconciliation reports: every item the platform holds."""
        with self.lock:
            return {code: {"status": held.status, "version": held.version, "document": held.document} for code, held in self.items.items()}

    # --- the API's answers ----------------------------------------------------------------
    def list_page(self, updated_since: datetime | None, page: int, page_size: int) -> tuple[dict, list[str]]:
        """A page of the change list, and the codes a `delete_between` fault removes after it."""
        with self.lock:
            rows = sorted(
                (h for h in self.items.values() if updated_since is None or h.updated_at >= updated_since),
                key=lambda h: (h.updated_at, h.document["implementation_code"]),
            )
            served = page
            if page > 1 and self._roll("duplicate_page"):
                served = page - 1
            chunk = [h.summary() for h in rows[(served - 1) * page_size : served * page_size]]
            if len(chunk) > 1 and self._roll("reorder"):
                self.rng.shuffle(chunk)
            cursor = max((h.updated_at for h in rows), default=updated_since or self._now())
            if self._roll("cursor_backwards"):
                cursor = cursor - timedelta(hours=self.rng.randrange(1, 48))
            if chunk and self._roll("malformed"):
                victim = dict(chunk[self.rng.randrange(len(chunk))])
                victim.pop("implementation_code" if self.rng.random() < 0.5 else "updated_at")
                chunk = [victim if c.get("implementation_code") == victim.get("implementation_code") else c for c in chunk]
            doomed = [chunk[self.rng.randrange(len(chunk))].get("implementation_code")] if chunk and self._roll("delete_between") else []
            body = {"code": 0, "msg": "success", "total": len(rows), "page": page, "page_size": page_size, "items": chunk, "cursor": cursor.isoformat()}
            return body, [c for c in doomed if c]

    def detail(self, code: str) -> dict | None:
        with self.lock:
            held = self.items.get(code)
            if held is None:
                return None
            body = held.detail()
            if self._roll("malformed"):
                body = json.loads(json.dumps(body))
                broken = self.rng.choice(("item_type", "guide", "area_code", "materials"))
                if broken == "item_type":
                    body["item_type"] = "99"
                elif broken == "materials":
                    body["guide"]["materials"] = [{"required": "maybe"}]
                else:
                    body.pop(broken)
            return body


class FaultsBody(BaseModel):
    timeout: float = 0.0
    error: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    duplicate_page: float = 0.0
    reorder: float = 0.0
    delete_between: float = 0.0
    cursor_backwards: float = 0.0
    hang_seconds: float = 5.0


class WebhookBody(BaseModel):
    url: str
    secret: str


class EditBody(BaseModel):
    note: str | None = None
    changes: dict | None = None


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="政务服务一体化平台（模拟）", docs_url="/_sim/docs", openapi_url="/_sim/openapi.json")
    app.state.platform = platform

    async def weather(allow_truncation: bool = True) -> Response | None:
        """Timeouts and server errors hit every API call alike."""
        if platform._roll("timeout"):
            await asyncio.sleep(platform.faults.hang_seconds)
        if platform._roll("error"):
            return JSONResponse({"code": 500, "msg": "系统繁忙，请稍后再试"}, status_code=platform.rng.choice((500, 502, 503)))
        return None

    def answer(body: dict) -> Response:
        raw = json.dumps(body, ensure_ascii=False).encode()
        if platform._roll("truncated"):
            raw = raw[: platform.rng.randrange(1, max(2, len(raw) - 1))]
        return Response(raw, media_type="application/json")

    @app.get("/api/v1/items")
    async def list_items(updated_since: datetime | None = None, page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=500)):
        if (refusal := await weather()) is not None:
            return refusal
        if updated_since is not None and updated_since.tzinfo is None:
            updated_since = updated_since.replace(tzinfo=timezone.utc)
        body, doomed = platform.list_page(updated_since, page, page_size)
        for code in doomed:  # gone before the client asks for its detail
            platform.delete(code)
        return answer(body)

    @app.get("/api/v1/items/{code}")
    async def item_detail(code: str):
        if (refusal := await weather()) is not None:
            return refusal
        body = platform.detail(code)
        if body is None:
            return JSONResponse({"code": 404, "msg": "事项不存在或已删除"}, status_code=404)
        return answer(body)

    @app.get("/apply/{code}", response_class=HTMLResponse, include_in_schema=False)
    def apply_online(code: str):
        return f"<!doctype html><meta charset=utf-8><title>网上办理</title><h1>网上办理（模拟）</h1><p>{code}</p>"

    @app.get("/forms/{name}", include_in_schema=False)
    def blank_form(name: str):
        return Response(f"blank form {name}".encode(), media_type="application/octet-stream")

    # --- control (tests, benchmark, demos) --------------------------------------------------
    @app.get("/_sim/state")
    def sim_state():
        return platform.state()

    @app.post("/_sim/faults")
    def set_faults(body: FaultsBody):
        platform.faults = Faults(**body.model_dump())
        return body

    @app.post("/_sim/webhook")
    def set_webhook(body: WebhookBody):
        if platform.webhooks:
            platform.webhooks.close()
        platform.webhooks = WebhookSender(body.url, body.secret)
        return {"url": body.url}

    @app.post("/_sim/items/{code}/edit")
    def sim_edit(code: str, body: EditBody):
        if code not in platform.items:
            raise HTTPException(404, "no such item")
        return platform.edit(code, note=body.note, changes=body.changes)

    @app.post("/_sim/items/{code}/{action}")
    def sim_action(code: str, action: str):
        if code not in platform.items:
            raise HTTPException(404, "no such item")
        if action not in ("revoke", "reinstate", "delete"):
            raise HTTPException(404, "unknown action")
        getattr(platform, action)(code)
        return {"implementation_code": code, "action": action}

    @app.post("/_sim/churn")
    def sim_churn(count: int = Query(10, ge=1, le=10_000)):
        return platform.churn(count)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception):  # the platform's own bugs look like 500s
        log.exception("simulator.error", error=repr(exc))
        return JSONResponse({"code": 500, "msg": "内部错误"}, status_code=500)

    return app


class Served:
    """An ASGI app served by uvicorn on a thread (tests, the benchmark, `bridge simulate`)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name=f"served-{port}", daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
