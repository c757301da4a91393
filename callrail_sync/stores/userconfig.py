"""Which CallRail accounts each DashClicks account has configured (the spec's
`analytics.callrail.userconfig`): what beat keeps fresh."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING

from callrail_sync.stores.database import Db, utcnow

COLLECTION = "analytics.callrail.userconfig"


class UserConfigStore:
    """The configured CallRail accounts of DashClicks accounts, in the spec's collection (a
    single `callrail_account_id` is read too, as older documents have it)."""

    def __init__(self, db: Db) -> None:
        self._config = db[COLLECTION]

    def ensure_indexes(self) -> None:
        self._config.create_index([("account_id", ASCENDING)])

    def set(self, owner: str, callrail_account_ids: Iterable[str]) -> None:
        """Replace the owner's configured CallRail accounts."""
        self._config.update_one(
            {"account_id": ObjectId(owner)},
            {"$set": {"callrail_account_ids": list(callrail_account_ids), "updated_at": utcnow()}},
            upsert=True,
        )

    def configured(self) -> Iterator[tuple[str, list[str]]]:
        """(owner, CallRail account ids) for every DashClicks account with a config."""
        for doc in self._config.find({}):
            yield str(doc["account_id"]), _ids(doc)

    def of_owner(self, owner: str) -> list[str]:
        """The CallRail accounts one DashClicks account has configured."""
        doc = self._config.find_one({"account_id": ObjectId(owner)})
        return _ids(doc) if doc else []


def _ids(doc: dict[str, Any]) -> list[str]:
    ids = list(doc.get("callrail_account_ids") or [])
    if doc.get("callrail_account_id"):
        ids.append(doc["callrail_account_id"])
    return [str(i) for i in dict.fromkeys(ids)]
