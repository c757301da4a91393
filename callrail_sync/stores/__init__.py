"""All MongoDB access of callrail-sync: one module per concern, on one database handle.

Each store is one class over its collections; a `Protocol` describes a store only where a
second implementation exists (the benchmarks' `Tracker`, `SnapshotWriter`, `StreamRecordStore`).
`connect` builds them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from callrail_sync.config import Settings
from callrail_sync.sealed import Sealer, sealer_for
from callrail_sync.stores.changes import ChangeStore
from callrail_sync.stores.database import Db, open_database
from callrail_sync.stores.inbox import InboxStore
from callrail_sync.stores.jobs import JobStore, OnChange
from callrail_sync.stores.keys import KeyStore
from callrail_sync.stores.notifications import NotificationStore
from callrail_sync.stores.receivers import ReceiverStore
from callrail_sync.stores.schedules import ScheduleStore
from callrail_sync.stores.snapshots import MongoSnapshotStore
from callrail_sync.stores.streams import MongoStreamStore, StreamRecordStore
from callrail_sync.stores.userconfig import UserConfigStore
from callrail_sync.stores.webhooks import WebhookStore


@dataclass
class Stores:
    """Every store, as the rest of the service sees them."""

    db: Db
    keys: KeyStore
    userconfig: UserConfigStore
    jobs: JobStore
    snapshots: MongoSnapshotStore
    webhooks: WebhookStore
    changes: ChangeStore
    notifications: NotificationStore
    schedules: ScheduleStore
    receivers: ReceiverStore
    inbox: InboxStore
    streams: StreamRecordStore

    def ping(self) -> bool:
        try:
            self.db.command("ping")
            return True
        except Exception:
            return False


def on_database(
    db: Db,
    on_job_change: OnChange | None = None,
    sealer: Sealer | None = None,
    settings: Settings | None = None,
) -> Stores:
    """The Mongo stores over one database, their indexes created (idempotent); `sealer`
    encrypts the secrets they keep (SECRETS_KEYS)."""
    keys, userconfig = KeyStore(db), UserConfigStore(db)
    jobs = JobStore(db, on_job_change)
    snapshots, webhooks = MongoSnapshotStore(db), WebhookStore(db)
    changes, notifications = ChangeStore(db), NotificationStore(db, sealer)
    schedules, receivers, inbox = (
        ScheduleStore(db),
        ReceiverStore(db, sealer),
        InboxStore(
            db,
            settings.inbox_retention_days if settings else 30.0,
            settings.call_events_retention_days if settings else 760.0,
        ),
    )
    streams = MongoStreamStore(db)
    every = (keys, userconfig, jobs, snapshots, webhooks, changes, notifications, schedules)
    for store in (*every, receivers, inbox, streams):
        store.ensure_indexes()
    return Stores(db, *every, receivers, inbox, streams)


def connect(settings: Settings, on_job_change: OnChange | None = None) -> Stores:
    """The stores for these settings (a server at MONGO_URL, else an in-process database);
    `on_job_change` hears of every job write (the job events)."""
    sealer = sealer_for(settings)
    return on_database(open_database(settings), on_job_change, sealer, settings)
