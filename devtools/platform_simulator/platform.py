"""The simulated platform's state and behaviour, and its signed change notices."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import structlog

from services.bridge.webhooks import sign

from .items import Faults, SimItem
from .templates import PLATFORM

log = structlog.get_logger("tongyuan.bridge.simulator")


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
