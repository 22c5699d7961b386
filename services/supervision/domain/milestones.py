"""The work plan's milestones and where a unit stands on each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

MilestoneMeasure = Literal["own_catalog", "content_complete"]
MilestoneState = Literal["met", "met_late", "missed", "pending"]
STATE_NAMES = {"met": "按期完成", "met_late": "逾期完成", "missed": "未完成（已逾期）", "pending": "未到期"}


@dataclass(frozen=True)
class Milestone:
    id: str
    name: str
    due: str  # MM-DD of the plan's year
    measure: MilestoneMeasure
    domains: Literal["all", "added_2022"] = "all"

    def due_in(self, year: int) -> date:
        month, day = (int(x) for x in self.due.split("-"))
        return date(year, month, day)


@dataclass(frozen=True)
class MilestoneStatus:
    milestone: Milestone
    due: date
    state: MilestoneState
    done_on: date | None
    detail: str

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


def milestone_status(milestone: Milestone, year: int, as_of: date, done_on: date | None, detail: str = "") -> MilestoneStatus:
    """Where a unit stands on one milestone on `as_of`; `done_on` is when it was achieved (≤ as_of)."""
    due = milestone.due_in(year)
    if done_on is not None and done_on > as_of:
        done_on = None
    if done_on is not None:
        state: MilestoneState = "met" if done_on <= due else "met_late"
    else:
        state = "pending" if as_of <= due else "missed"
    return MilestoneStatus(milestone, due, state, done_on, detail)
