"""Per CallRail account sync schedules (`callrail_schedules`): paused or not, and an interval
of its own. Beat reads them when it plans; an account without one follows SYNC_INTERVAL."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pymongo import ASCENDING, ReturnDocument

from callrail_sync.stores.database import Db, utcnow

COLLECTION = "callrail_schedules"


class Schedule(BaseModel):
    owner: str
    callrail_account_id: str
    paused: bool = False
    interval_seconds: int | None = None
    """This account's own interval; None follows SYNC_INTERVAL."""
    updated_at: datetime | None = None


class ScheduleStore:
    def __init__(self, db: Db) -> None:
        self._schedules = db[COLLECTION]

    def ensure_indexes(self) -> None:
        self._schedules.create_index([("owner", ASCENDING)])

    def get(self, owner: str, callrail_account_id: str) -> Schedule | None:
        doc = self._schedules.find_one({"_id": f"{owner}:{callrail_account_id}"})
        return Schedule.model_validate(doc) if doc else None

    def of_owner(self, owner: str) -> dict[str, Schedule]:
        """The owner's schedules by CallRail account."""
        docs = self._schedules.find({"owner": owner})
        return {d["callrail_account_id"]: Schedule.model_validate(d) for d in docs}

    def set(
        self, owner: str, callrail_account_id: str, paused: bool, interval_seconds: int | None
    ) -> Schedule:
        """Pause or resume an account, with its own interval (None: the default)."""
        doc = self._schedules.find_one_and_update(
            {"_id": f"{owner}:{callrail_account_id}"},
            {
                "$set": {
                    "owner": owner,
                    "callrail_account_id": callrail_account_id,
                    "paused": paused,
                    "interval_seconds": interval_seconds,
                    "updated_at": utcnow(),
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return Schedule.model_validate(doc)
