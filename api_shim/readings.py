"""What the shim reads at each scrape of its metrics: the state of the whole service, not of
one process (counters are each process's own; these are read from Redis and MongoDB).

- `callrail_queue_messages{queue}`: messages waiting in each Celery queue (webhooks, listings,
  periodic, notify);
- `callrail_jobs_active{type,status,lane}`: active jobs (queued, running, retrying);
- `callrail_job_waiting_seconds_max{lane}`: the longest a job that may start has waited to;
- `callrail_job_quiet_seconds_max{type}`: the longest a running job has gone without a write
  (a running job writes at every page);
- `callrail_budget_left{account,window}`: CallRail requests left this hour / day, for every
  configured CallRail account; `callrail_budget_limit{window}`: the windows' limits;
- `callrail_beat_last_plan_timestamp_seconds`: when beat's periodic plan last ran;
- `callrail_backfills_unfinished`, `callrail_backfill_requests`: backfills under way and the
  requests they have made (a stalled one stops adding).

Prometheus scrapes every 15-30 s; each reading is one indexed query or a Redis pipeline.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import get_args

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callrail_sync.budget import unit_for
from callrail_sync.job import JobStatus, Lane
from callrail_sync.metrics import beat_planned_key
from callrail_sync.runtime import Runtime
from callrail_sync.stores.database import UNAVAILABLE, utcnow
from callrail_sync.stores.jobs import ActiveRow
from celeryconfig import Queues
from tasks.names import QueueName

log = logging.getLogger("api_shim.readings")
PRIORITY_STEPS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
"""kombu's Redis transport keeps a queue's prioritized messages in lists with these suffixes."""
MAX_BUDGET_ACCOUNTS = 500
WINDOWS = {3600: "hour", 86400: "day"}
FAILURES: tuple[type[Exception], ...] = (redis.RedisError, *UNAVAILABLE)


class ServiceReadings(Collector):
    """A Prometheus collector over one runtime's Redis and stores."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for read in (self._queues, self._jobs, self._budgets, self._beat, self._backfills):
            try:
                yield from read()
            except FAILURES as exc:
                # A reading that cannot be taken is absent: the alerts on `absent()` and on
                # the shim's own readiness say so, rather than a made-up zero.
                log.warning(
                    "metrics reading failed", extra={"reading": read.__name__, "error": str(exc)}
                )

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "callrail_queue_messages", "Messages waiting in a Celery queue", labels=["queue"]
        )
        queues = Queues(self.rt.settings.queue_suffix)
        names: tuple[QueueName, ...] = get_args(QueueName)
        pipe = self.rt.redis.pipeline(transaction=False)
        for name in names:
            for step in PRIORITY_STEPS:
                pipe.llen(queues.named(name) + step)
        lengths = pipe.execute()
        steps = len(PRIORITY_STEPS)
        for i, name in enumerate(names):
            family.add_metric([name], sum(int(n) for n in lengths[i * steps : (i + 1) * steps]))
        yield family

    def _jobs(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        rows = self.rt.stores.jobs.active_rows()
        active = GaugeMetricFamily(
            "callrail_jobs_active",
            "Jobs queued, running or retrying, by type, status and lane",
            labels=["type", "status", "lane"],
        )
        for (job_type, status, lane), n in sorted(
            Counter((r.type, r.status, r.lane) for r in rows).items()
        ):
            active.add_metric([job_type, status, lane], n)
        waiting = {lane.value: 0.0 for lane in Lane}
        quiet: dict[str, float] = {}
        for r in rows:
            since = _startable_since(r, now)
            if since is not None:
                waiting[r.lane] = max(waiting.get(r.lane, 0.0), (now - since).total_seconds())
            if r.status == JobStatus.RUNNING.value:
                quiet[r.type] = max(quiet.get(r.type, 0.0), (now - r.updated_at).total_seconds())
        wait = GaugeMetricFamily(
            "callrail_job_waiting_seconds_max",
            "The longest a job that may start now has waited for a worker, by lane",
            labels=["lane"],
        )
        for lane, seconds in sorted(waiting.items()):
            wait.add_metric([lane], seconds)
        still = GaugeMetricFamily(
            "callrail_job_quiet_seconds_max",
            "The longest a running job has gone without progress (a write), by type",
            labels=["type"],
        )
        for job_type, seconds in sorted(quiet.items()):
            still.add_metric([job_type], seconds)
        yield from (active, wait, still)

    def _budgets(self) -> Iterator[GaugeMetricFamily]:
        budget = self.rt.budget
        left = GaugeMetricFamily(
            "callrail_budget_left",
            "CallRail requests left in a window (hour, day), per configured CallRail account",
            labels=["account", "window"],
        )
        limit = GaugeMetricFamily(
            "callrail_budget_limit",
            "Requests a CallRail account may make in a window",
            labels=["window"],
        )
        for w in budget.windows:
            limit.add_metric([WINDOWS.get(int(w.seconds), str(int(w.seconds)))], w.limit)
        accounts: dict[str, None] = {}
        for _, ids in self.rt.stores.userconfig.configured():
            accounts.update(dict.fromkeys(ids))
            if len(accounts) >= MAX_BUDGET_ACCOUNTS:
                break
        for account in list(accounts)[:MAX_BUDGET_ACCOUNTS]:
            found = budget.left(unit_for("", f"/a/{account}/companies.json"))
            for seconds, n in sorted(found.left.items()):
                left.add_metric([account, WINDOWS.get(seconds, str(seconds))], n)
        yield from (left, limit)

    def _beat(self) -> Iterator[GaugeMetricFamily]:
        raw = self.rt.redis.get(beat_planned_key(self.rt.settings.redis_prefix))
        yield GaugeMetricFamily(
            "callrail_beat_last_plan_timestamp_seconds",
            "When beat's periodic plan last ran (Unix seconds; 0: never)",
            value=float(raw) if raw is not None else 0.0,
        )

    def _backfills(self) -> Iterator[GaugeMetricFamily]:
        states = self.rt.stores.streams.unfinished_backfills()
        yield GaugeMetricFamily(
            "callrail_backfills_unfinished",
            "Stream backfills started and not finished",
            value=len(states),
        )
        yield GaugeMetricFamily(
            "callrail_backfill_requests",
            "CallRail requests made so far by the unfinished backfills (grows while they run)",
            value=sum(s.requests for s in states),
        )


def _startable_since(row: ActiveRow, now: datetime) -> datetime | None:
    """Since when a job has been free to start and has not (None: it runs, or waits on
    purpose for its start time, its retry time or the rate limit)."""
    if row.status == JobStatus.QUEUED.value:
        since = max(row.updated_at, row.not_before) if row.not_before else row.updated_at
    elif row.status == JobStatus.RETRYING.value and row.next_retry_at is not None:
        since = row.next_retry_at
    else:
        return None
    return since if since <= now else None


def exposition_of(runtime: Runtime) -> bytes:
    """The readings in Prometheus' text format (appended to the process's own metrics)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceReadings(runtime))
    started = time.monotonic()
    text = generate_latest(registry)
    log.debug("metrics readings taken", extra={"seconds": round(time.monotonic() - started, 3)})
    return text
