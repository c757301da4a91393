"""`callrail-sync status` and `callrail-sync changes`: what the status route and the change feed
answer, read from the stores the settings point at (MONGO_URL, REDIS_URL)."""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from api_shim.envelope import refusal
from callrail_sync import feed, records
from callrail_sync.cli.ops import Context, add_account
from callrail_sync.errors import ValidationFailed
from callrail_sync.runtime import build_runtime
from callrail_sync.status import ListingStatus, owner_status
from callrail_sync.stores.changes import FeedQuery
from callrail_sync.stores.database import utcnow
from callrail_sync.streams import STREAMS


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


STATUS_COLUMNS = ("listing", "state", "records", "last success", "next sync", "budget left")
# Left-aligned columns; the others are numbers and times, aligned right.
_LEFT = {"listing", "state"}


def status_row(entry: ListingStatus) -> tuple[str, ...]:
    what = entry.kind if entry.account_id is None else f"{entry.kind} of {entry.account_id}"
    records = entry.counts.get("records")
    budget = entry.budget
    return (
        what,
        entry.state,
        str(records) if records is not None else "-",
        _when(entry.last_success_at),
        _when(entry.next_scheduled_at),
        f"{budget.hour_left}/h {budget.day_left}/d" if budget else "-",
    )


def status_table(entries: list[ListingStatus]) -> list[str]:
    """The status table, each column as wide as its widest cell, whatever the names' lengths;
    an entry's backfill, last error and its remedy follow it, indented under the state."""
    rows = [status_row(e) for e in entries]
    widths = [
        max(len(cell) for cell in column) for column in zip(STATUS_COLUMNS, *rows, strict=True)
    ]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if name in _LEFT else cell.rjust(w)
            for name, cell, w in zip(STATUS_COLUMNS, cells, widths, strict=True)
        ).rstrip()

    indent = " " * (widths[0] + 2)
    lines = [line(STATUS_COLUMNS)]
    for entry, row in zip(entries, rows, strict=True):
        lines.append(line(row))
        backfill = entry.backfill
        if backfill is not None:
            finish = backfill.finished_at or backfill.estimated_finish
            done = "finished" if backfill.finished_at else "finish ~"
            lines.append(
                f"{indent}backfill {backfill.windows_done}/{backfill.windows_total} windows, "
                f"back to {backfill.oldest_reached or '-'}, {backfill.records} records, "
                f"{done} {_when(finish)}"
            )
        if entry.last_error:
            lines.append(f"{indent}{entry.last_error['class']}: {entry.last_error['message']}")
            if entry.last_error.get("remedy"):
                lines.append(f"{indent}-> {entry.last_error['remedy']}")
    return lines


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    rt = build_runtime(ctx.settings, stores=ctx.stores)
    rt.redis.ping()  # out of reach: the one line of `main`, not a table without budgets
    entries = owner_status(rt, args.account, utcnow())
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return 0
    print("\n".join(status_table(entries)))
    return 0


def cmd_changes(args: argparse.Namespace, ctx: Context) -> int:
    kind = args.kind or ("companies" if args.callrail_account else "accounts")
    if STREAMS[kind].account_scoped and not args.callrail_account:
        print(f"--kind {kind} needs --callrail-account")
        return 2
    query = FeedQuery(
        owner=args.account,
        kind=kind,
        callrail_account_id=args.callrail_account,
        actions=feed.parse_actions(args.filter),
        modified_after=feed.parse_time(args.modified_after, "--modified-after"),
        limit=args.limit,
    )
    if args.cursor:
        query = query.model_copy(update={"after": feed.decode_cursor(query, args.cursor)})
    page = feed.read_changes(ctx.stores, query)
    for change in page.changes:
        name = change.record.get("name") or change.record.get("customer_name") or ""
        print(f"{change.changed_at:%Y-%m-%d %H:%M:%S}  {change.action:<8} {change.id:<40} {name}")
    if not page.changes:
        print("(no changes)")
    more = " (more: run again with it)" if page.has_more else ""
    print(f"next cursor: {feed.encode_cursor(query, page.next_after)}{more}")
    return 0


def cmd_records(args: argparse.Namespace, ctx: Context) -> int:
    """One page of a stream's records from our store (as GET /records/{stream} answers)."""
    params = {
        "account_id": args.callrail_account,
        "company_id": args.company,
        "since": args.since,
        "until": args.until,
        "cursor": args.cursor,
        "limit": str(args.limit),
        "sort": args.sort,
        "search": args.search,
    }
    try:
        stream = records.known_stream(args.stream)
        query = records.RecordsQuery.model_validate({k: v for k, v in params.items() if v})
        asked = records.records_request(args.account, stream, query)
    except LookupError as exc:
        print(exc.args[0])
        return 2
    except ValidationError as invalid:
        print(refusal(invalid.errors()[0]))  # the message the shim's 400 has
        return 2
    except ValidationFailed as exc:
        print(exc.user_message)
        return 2
    page = records.read_records(ctx.stores, asked)
    if args.json:
        print(json.dumps(page, indent=2, default=str))
        return 0
    stream = asked.stream
    for record in page["records"]:
        when = record.get(stream.time_field) if stream.time_field else None
        label = record.get("customer_name") or record.get("name") or record.get("email") or ""
        extra = record.get("source") or record.get("status") or ""
        print(f"{when or '-':<26} {record['id']:<36} {str(label)[:30]:<30} {extra}")
    if not page["records"]:
        print("(no records)")
    if page["has_more"]:
        print(f"next cursor: {page['next_cursor']}")
    return 0


def add_insight_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="where each listing stands: state, records, next sync, budget, errors",
        description="Where each listing of a DashClicks account stands: its state, records, "
        "last success, next sync, the CallRail requests left this hour and today, and the last "
        "error with what to do about it.",
    )
    add_account(p)
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "changes",
        help="what changed in CallRail: records added, updated, deleted",
        description="Read the change feed of a listing, oldest first, and print the cursor to "
        "continue from.",
    )
    add_account(p)
    p.add_argument(
        "--callrail-account", help="the companies of this CallRail account (default: accounts)"
    )
    p.add_argument(
        "--kind", choices=list(STREAMS), help="the feed (default: companies, or accounts)"
    )
    p.add_argument("--cursor", help="the cursor the previous run printed")
    p.add_argument("--filter", help="any of added,updated,deleted, comma-separated")
    p.add_argument("--modified-after", help="only changes after this ISO 8601 time")
    p.add_argument("--limit", type=int, default=50, help="how many (50)")
    p.set_defaults(func=cmd_changes)

    p = sub.add_parser(
        "records",
        help="read a stream's records (calls, forms...) as kept here",
        description="One page of a stream's records from our store, as GET /records/{stream} "
        "answers; it asks CallRail nothing.",
    )
    p.add_argument("stream", choices=list(STREAMS), help="which stream")
    add_account(p)
    p.add_argument("--callrail-account", help="the CallRail account (all streams but accounts)")
    p.add_argument("--company", help="only this company's records")
    p.add_argument("--since", help="ISO 8601 time with an offset (inclusive)")
    p.add_argument("--until", help="ISO 8601 time with an offset (exclusive)")
    p.add_argument("--sort", help="field or -field (default: newest first)")
    p.add_argument("--search", help="a case-insensitive substring")
    p.add_argument("--cursor", help="the cursor the previous run printed")
    p.add_argument("--limit", type=int, default=50, help="how many (50)")
    p.add_argument("--json", action="store_true", help="print the page as JSON")
    p.set_defaults(func=cmd_records)
