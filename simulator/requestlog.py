"""The simulator's request log: what clients asked and how each request was answered."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass


@dataclass
class LoggedRequest:
    """One request as the simulator answered it; status 0: the connection closed unanswered."""

    method: str
    path: str
    query: str
    status: int
    key: str | None
    at: float
    quota_unit: str | None = None
    """Whose quota the request was charged to (`QuotaUnit.label`); None before authentication."""


class RequestLog:
    """The latest requests, oldest first, with a count by status that outlives the window."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=maxlen)
        self._counts: Counter[int] = Counter()

    def record(self, entry: LoggedRequest) -> None:
        """Keep an answered (or dropped) request; the oldest falls out past `maxlen`."""
        with self._lock:
            self._entries.append(entry)
            self._counts[entry.status] += 1

    def clear(self) -> None:
        """Forget every entry and count."""
        with self._lock:
            self._entries.clear()
            self._counts.clear()

    def counts(self) -> dict[int, int]:
        """Requests by status since the last `clear`, 0 for connections closed unanswered."""
        with self._lock:
            return dict(self._counts)

    def select(self, method: str | None, path_contains: str) -> list[LoggedRequest]:
        """The kept entries of a method (None: any) whose path contains a text, oldest first."""
        with self._lock:
            return [
                r
                for r in self._entries
                if (method is None or r.method == method) and path_contains in r.path
            ]
