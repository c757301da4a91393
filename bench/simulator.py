"""Benchmark 12: what the simulator's call history costs it: making an account of 200,000
calls over 25 months, and the CPU time of one calls.json page of 250 calls (with every
optional field, with those our sync asks for, with the default keys), each page read once
as a backfill reads them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from callrail_sync.streams import STREAMS
from simulator import SimData
from simulator.call_listing import OPTIONAL, list_calls
from simulator.calls import CallBook


def bench_simulator(quick: bool) -> None:
    per_company, companies = (800, 50) if quick else (4_000, 50)
    total = per_company * companies
    print(f"\n12. simulator: an account of {total:,} calls over 760 days; CPU per 250-call page")
    data = SimData(seed=1, keys=1, accounts_per_key=0)
    key = data.add_key("bench")
    account = data.accounts[
        data.add_account(key, companies, calls_per_company=per_company, call_days=760)
    ]
    started = time.process_time()
    history = data.history(account)
    made = time.process_time() - started
    size = history.starts.itemsize * len(history) + history.company.itemsize * len(history)
    print(f"   history made in {made:.2f} s CPU; its arrays hold {size / 1e6:.1f} MB")
    book = CallBook(data)
    first = (datetime.now(UTC) - timedelta(days=700)).date().isoformat()
    sync_fields = ",".join(STREAMS["calls"].fields_always)
    for label, fields in (
        ("every field", ",".join(sorted(OPTIONAL))),
        ("sync's fields", sync_fields),
        ("default keys", ""),
    ):
        query = {
            "start_date": [first],
            "time_zone": ["UTC"],
            "per_page": ["250"],
            "relative_pagination": ["true"],
        }
        if fields:
            query["fields"] = [fields]
        pages = 40 if quick else 200
        spent: list[float] = []
        size_bytes = 0
        for index in range(pages):
            query["offset"] = [str(index * 3)]  # pages never read before: no cache helps
            began = time.process_time()
            text = list_calls(book, account, query, "http://sim/v3/a/x/calls.json")
            spent.append(time.process_time() - began)
            size_bytes = len(text)
        spent.sort()
        print(
            f"   {label:13}: median {spent[len(spent) // 2] * 1000:5.2f} ms, "
            f"p90 {spent[int(len(spent) * 0.9)] * 1000:5.2f} ms CPU a page "
            f"({size_bytes / 1e3:.0f} kB of JSON)"
        )
