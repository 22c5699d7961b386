"""What the disclosure office measures, as pure rules, a module per concern: time limits
(time_limits), timeliness, catalog completeness (catalog), the work plan's milestones, and
each unit's coverage, staleness and ranking (measures).

Conventions (shown on the dashboard as 口径, so a figure can always be explained):
- Dates are Beijing dates (UTC+8, no daylight saving); `published_at` is converted.
- A period starts the day after the information is formed (民法典 第二百零一条); "N个工作日内"
  ends on the N-th official working day after formed_at. A calendar-day limit ("批准后20日内")
  whose last day is a rest day ends on the next working day (第二百零三条).
- A catalog item without a time limit gets the statutory default, 20 working days
  (政府信息公开条例 第二十六条), labelled as such. A limit text that cannot be read as one rule
  (several limits for different content, a consultation period, "提前一周…") is reported
  as unparseable, never guessed.
- 实时/及时 has no number: it is assessed as "by the next working day" (REALTIME_WORKING_DAYS).
- 长期 (standing) and periodic (每月/每季度/每年) items have no per-publication deadline: their
  publications are exempt from timeliness and judged by staleness instead.
- Timeliness is counted per filing (a publication filed under two items counts for each);
  a late filing is at least one day late.
"""

from __future__ import annotations

from .catalog import (
    UNIT_LEVEL_WORDS,
    Completeness,
    ancestor_scopes,
    applies_to,
    completeness,
    skeleton,
)
from .measures import (
    SORTS,
    CatalogProfile,
    DomainMeasure,
    ItemMeasure,
    ItemState,
    LateItem,
    Progress,
    Tally,
    UnitCounts,
    UnitMeasures,
    catalog_profile,
    count_unit,
    domain_measures,
    measure_items,
    measure_unit,
    rank,
    unit_measures,
)
from .milestones import (
    STATE_NAMES,
    Milestone,
    MilestoneMeasure,
    MilestoneState,
    MilestoneStatus,
    milestone_status,
)
from .time_limits import (
    CYCLE_DAYS,
    PERIODIC_GRACE_DAYS,
    PERIODS,
    REALTIME_WORKING_DAYS,
    STATUTORY_WORKING_DAYS,
    RuleKind,
    TimeRule,
    parse_time_limit,
)
from .timeliness import (
    BEIJING,
    EXEMPT,
    LATE,
    NO_CALENDAR,
    ON_TIME,
    STATUS_NAMES,
    STATUSES,
    UNPARSED,
    Assessment,
    Timeliness,
    assess,
    beijing_date,
    month_key,
    split_window,
)

__all__ = [
    "Assessment",
    "BEIJING",
    "CYCLE_DAYS",
    "CatalogProfile",
    "Completeness",
    "DomainMeasure",
    "EXEMPT",
    "ItemMeasure",
    "ItemState",
    "LATE",
    "LateItem",
    "Milestone",
    "MilestoneMeasure",
    "MilestoneState",
    "MilestoneStatus",
    "NO_CALENDAR",
    "ON_TIME",
    "PERIODIC_GRACE_DAYS",
    "PERIODS",
    "Progress",
    "REALTIME_WORKING_DAYS",
    "RuleKind",
    "SORTS",
    "STATE_NAMES",
    "STATUSES",
    "STATUS_NAMES",
    "STATUTORY_WORKING_DAYS",
    "Tally",
    "TimeRule",
    "Timeliness",
    "UNIT_LEVEL_WORDS",
    "UNPARSED",
    "UnitCounts",
    "UnitMeasures",
    "ancestor_scopes",
    "applies_to",
    "assess",
    "beijing_date",
    "catalog_profile",
    "completeness",
    "count_unit",
    "domain_measures",
    "measure_items",
    "measure_unit",
    "milestone_status",
    "month_key",
    "parse_time_limit",
    "rank",
    "skeleton",
    "split_window",
    "unit_measures",
]
