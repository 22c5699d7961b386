"""A large legacy export for the migration benchmark, written streaming, with its config.

Rows look like the samples: Chinese HTML bodies of 1–2 KB with inline styles, six date formats,
index numbers, attachments on some rows. Their dates climb with the old article number over ten
years, 5% of them up to 90 days earlier than their neighbours. About 1% of rows sit in an old
column no rule places and 0.4% repeat an earlier row exactly. The counts it wrote come back, so
a benchmark can check what arrived.

    .venv/bin/python -m devtools.synthetic_export var/bench/migration --rows 100000 --measure
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from contracts.catalog import Catalog, standard_catalog

HEADER = ("序号", "标题", "内容", "发布日期", "栏目", "索引号", "发布机构", "附件")
SITE = "synthetic"
BACKDATED_SHARE, BACKDATED_DAYS = 0.05, 90  # rows dated before the rows around them, and by how much at most
DATE_ORDERS = ("publication", "random")
BASE_URL = "http://www.example.gov.cn/"
DEPARTMENTS = ("县民政局", "县财政局", "县教育局", "县卫生健康局", "县人力资源和社会保障局", "县自然资源局", "县交通运输局", "县人民政府办公室")
SENTENCES = (
    "根据《中华人民共和国政府信息公开条例》和上级有关文件精神，结合我县实际，现将有关事项公告如下。",
    "各乡镇（街道）、县直各单位要高度重视，加强组织领导，明确责任分工，确保各项工作落到实处。",
    "申请人应当如实提供家庭人口、收入和财产状况等证明材料，并签署授权核查家庭经济状况声明。",
    "对公示期间群众反映的问题，经办机构应当及时组织调查核实，并将核实结果予以公开。",
    "本办法自发布之日起施行，由县人民政府办公室负责解释，原有规定与本办法不一致的，以本办法为准。",
    "监督举报电话：0731-8401XXXX，邮箱：zwgk@example.gov.cn，受理时间为工作日上午9时至下午5时。",
    "资金实行专户管理、封闭运行，严禁截留、挤占、挪用，审计部门将定期开展监督检查。",
    "全县共有义务教育阶段学校九十三所，在校学生八万余人，专任教师五千余人，办学条件持续改善。",
    "请符合条件的群众携带身份证、户口簿等材料，到所在乡镇（街道）便民服务中心窗口办理。",
    "下一步，我们将继续深化政务公开标准化规范化建设，推动基层政务公开向纵深发展。",
)
STYLES = (
    '<p style="text-indent:2em;font-family:仿宋_GB2312;font-size:16pt;line-height:28pt">{}</p>',
    '<p class=MsoNormal><span style="FONT-SIZE: 12pt; mso-bidi-font-family: 宋体">{}</span>',
    '<div align=left><font face="宋体" color=#333333>{}</font></div>',
    "<P>{}",
)
DATE_FORMATS = ("{y}-{m}-{d}", "{y}年{m}月{d}日", "{y}/{m:02d}/{d:02d}", "{y}.{m:02d}.{d:02d}", "{y}{m:02d}{d:02d}", "{y}-{m:02d}-{d:02d} {H:02d}:{M:02d}:00")


@dataclass(frozen=True)
class SyntheticExport:
    csv_path: Path
    config_path: Path
    rows: int
    planned: int
    duplicates: int
    unmapped: int


def _placements(catalog: Catalog) -> list[tuple[str, str, str, str]]:
    """(old column path, domain code, level-1 id, level-2 id) for every level-2 item."""
    return [(f"政务公开/重点领域/{d.name}/{l1.name}/{l2.name}", d.code, l1.id, l2.id) for d in catalog.domains for l1 in d.level1 for l2 in l1.items]


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, *, region_code: str, placements: list[tuple[str, str, str, str]]) -> None:
    lines = [
        f'site = "{SITE}"',
        f'region_code = "{region_code}"',
        'encoding = "utf-8-sig"',
        f'base_url = "{BASE_URL}"',
        "",
        "[columns]",
        'title = "标题"',
        'body = "内容"',
        'date = "发布日期"',
        'path = "栏目"',
        'index_number = "索引号"',
        'department = "发布机构"',
        'attachments = "附件"',
    ]
    for old_path, domain, level1, level2 in placements:
        lines += ["", "[[rules]]", f"prefix = {_toml(old_path)}", f'domain = "{domain}"', f'level1 = "{level1}"', f'level2 = "{level2}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _bodies(rng: random.Random, count: int = 256) -> list[str]:
    """Bodies of 1–2 KB (UTF-8) to draw from; each row adds its own first paragraph."""
    bodies = []
    for _ in range(count):
        target = rng.randint(1024, 2048)
        parts: list[str] = []
        while sum(len(p.encode()) for p in parts) < target:
            parts.append(rng.choice(STYLES).format(rng.choice(SENTENCES)))
        if rng.random() < 0.2:
            parts.insert(rng.randrange(len(parts)), "<p><span style='color:red'>（此件公开发布）<p>")  # unclosed tags, as old editors left them
        bodies.append("".join(parts))
    return bodies


def write_synthetic_export(
    directory: Path,
    rows: int,
    *,
    seed: int = 20260302,
    region_code: str = "430121",
    unmapped_every: int = 100,
    duplicate_every: int = 250,
    catalog: Catalog | None = None,
    dates: str = "publication",
) -> SyntheticExport:
    """Write `rows` records to directory/synthetic.csv (UTF-8 with BOM) and the config to
    directory/synthetic.toml. Deterministic for a seed. `dates`: "publication" (in the order
    of the old article numbers, a few filed late) or "random" (any day of the ten years on any
    row: the worst case for the stores' indexes on dates and on publication ids)."""
    if dates not in DATE_ORDERS:
        raise ValueError(f"dates must be one of {DATE_ORDERS}, not {dates!r}")
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    placements = _placements(catalog or standard_catalog())
    config_path, csv_path = directory / f"{SITE}.toml", directory / f"{SITE}.csv"
    write_config(config_path, region_code=region_code, placements=placements)
    bodies = _bodies(rng)
    first_day, days = date(2015, 1, 1), (date(2024, 12, 31) - date(2015, 1, 1)).days
    recent: deque[list[str]] = deque(maxlen=16)
    planned = duplicates = unmapped = 0
    with csv_path.open("w", encoding="utf-8-sig", newline="", buffering=1 << 20) as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        for number in range(1, rows + 1):
            if number % duplicate_every == 0 and recent:
                writer.writerow(recent[rng.randrange(len(recent))])
                duplicates += 1
                continue
            # An old CMS numbers its articles as they are written, so an export of them runs in
            # publication order; a few were filed late, under an earlier date.
            if dates == "random":
                day = first_day + timedelta(days=rng.randrange(days))
            else:
                day = first_day + timedelta(days=(number - 1) * days // rows)
            if dates == "publication" and rng.random() < BACKDATED_SHARE:
                day = max(first_day, day - timedelta(days=rng.randrange(1, BACKDATED_DAYS + 1)))
            stamp = DATE_FORMATS[number % len(DATE_FORMATS)].format(y=day.year, m=day.month, d=day.day, H=rng.randrange(8, 18), M=rng.randrange(60))
            if number % unmapped_every == unmapped_every // 2:
                old_path, name = f"政务公开/历史栏目/已撤销栏目{number % 37}", "历史信息"
                unmapped += 1
            else:
                old_path, _, _, _ = placements[number % len(placements)]
                name = old_path.rsplit("/", 1)[-1]
                planned += 1
            attachment = f"附件{number}.pdf|/uploads/{day.year}/{number}.pdf" if number % 10 == 3 else ""
            row = [
                str(number),
                f"{DEPARTMENTS[number % len(DEPARTMENTS)]}关于{day.year}年{name}的公示（第{number}号）",
                f"<p>文号：{day.year}第{number}号</p>" + bodies[rng.randrange(len(bodies))],
                stamp,
                old_path,
                f"000014349/{day.year}-{number:07d}",
                DEPARTMENTS[number % len(DEPARTMENTS)],
                attachment,
            ]
            writer.writerow(row)
            if not old_path.startswith("政务公开/历史栏目"):
                recent.append(row)
    return SyntheticExport(csv_path=csv_path, config_path=config_path, rows=rows, planned=planned, duplicates=duplicates, unmapped=unmapped)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dates", choices=DATE_ORDERS, default="publication", help="rows in publication order (default) or dated at random")
    parser.add_argument("--measure", action="store_true", help="then read and map the export, and print rows/s and peak memory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    export = write_synthetic_export(args.directory, args.rows, dates=args.dates)
    took = time.perf_counter() - started
    size = export.csv_path.stat().st_size / 2**20
    print(
        f"wrote {export.rows:,} rows ({size:,.0f} MiB) in {took:.1f} s ({export.rows / took:,.0f} rows/s): {export.planned:,} mappable, {export.unmapped:,} unmapped, {export.duplicates:,} repeats"
    )
    if not args.measure:
        return
    from contracts.catalog import regions_of_city
    from contracts.identity import Principal

    from .config import load_config
    from .stream import read_legacy
    from .summary import MigrationSummary

    class _Directory:
        regions = {r.code: r for r in regions_of_city("4301")}

        @staticmethod
        def catalog_for(region_code: str) -> Catalog:
            return standard_catalog()

    directory = _Directory()
    before = _peak_mib()
    config = load_config(export.config_path, directory)
    started, cpu = time.perf_counter(), time.process_time()
    summary = MigrationSummary(source=config.source)
    with read_legacy(config, export.csv_path, principal=Principal(user="migration", roles=("admin",)), catalog_directory=directory) as stream:
        for item in stream:
            summary.add(item)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"read+mapped {summary.rows_read:,} rows in {took:.1f} s: {summary.rows_read / took:,.0f} rows/s, {size / took:,.1f} MiB/s "
        f"({summary.rows_read / cpu:,.0f} rows per CPU-second; one core); "
        f"peak RSS {_peak_mib():,.0f} MiB (before reading {before:,.0f} MiB); "
        f"planned {summary.planned:,}, duplicates {summary.duplicates:,}, rejects {dict(summary.rejects)}"
    )


if __name__ == "__main__":
    main()
