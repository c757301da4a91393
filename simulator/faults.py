"""What the simulator does wrong on purpose: latency, the request quota and injected failures.

`Knobs` say what to inject; `Faults` holds them with the quota windows and turns a chosen
failure into what the client sees: an error reply, a hang, or a connection closed unanswered.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.replies import RAILS_ERROR_PAGE, Reply, error

DROP = "drop"
"""Failure: the connection closes before the request is handled."""
LOST = "lost"
"""Failure: the request takes effect, then the connection closes without an answer."""


@dataclass(frozen=True)
class QuotaUnit:
    """Whose quota a request spends: the CallRail account its path names, else its API key.

    CallRail counts per account, and every key and app on the account shares the count
    (CALLRAIL_API.md). A request naming no account (`/v3/a.json`) is charged to the key: a
    guess, as CallRail does not say.
    """

    kind: Literal["account", "key"]
    id: str = field(repr=False)  # an API key must not leak through a repr

    @classmethod
    def of(cls, key: str, account_id: str | None) -> QuotaUnit:
        """The account's unit when the request names one `key` may see, else the key's."""
        return cls("account", account_id) if account_id else cls("key", key)

    @property
    def label(self) -> str:
        """The unit as the request log shows it; of a key, only the first 8 characters."""
        return f"account:{self.id}" if self.kind == "account" else f"key:{self.id[:8]}…"


@dataclass
class Knobs:
    """Behaviour a test or benchmark can turn: latency, rate limits and injected failures."""

    latency: float = 0.0
    """Seconds added to every request."""
    rate_limits: list[tuple[int, float]] = field(default_factory=list)
    """(requests, window seconds) per `QuotaUnit`, e.g. [(1000, 3600), (10000, 86400)].
    Empty: no limit."""
    send_retry_after: bool = False
    """Whether a 429 carries `Retry-After` (undocumented upstream: test both)."""
    failure_rate: float = 0.0
    """Share of requests that fail with one of `failure_kinds`."""
    failure_kinds: list[str] = field(default_factory=lambda: ["500", "503", "timeout", "drop"])
    fail_next: list[str] = field(default_factory=list)
    """Scripted outcomes of the next requests, in order: "ok", "429", "500", "503", "timeout",
    "drop" (closed before handling), "lost" (handled, then closed without an answer)."""
    scripted_retry_after: float = 1.0
    """Retry-After of a scripted "429" (sent only with `send_retry_after`)."""
    hang: float = 5.0
    """How long a "timeout" failure keeps the client waiting."""
    failure_seed: int = 7
    """Seed of the random failures, so a benchmark with `failure_rate` can be repeated."""
    # --- webhook deliveries of placed calls (deliveries.py) --------------------------------
    post_call_delay: float = 0.0
    """Seconds from a call's `pre_call` delivery to its `post_call` (CallRail: up to 20 min)."""
    delivery_timeout: float = 5.0
    """Seconds a delivery waits for the receiver to connect and answer; sent once, no retry."""
    delivery_drop_rate: float = 0.0
    """Share of deliveries lost on the way (never sent, logged as dropped)."""
    delivery_seed: int = 7
    """Seed of the drop dice: each delivery's draw depends only on it, the call id, the event
    and the URL, so the same calls lose the same deliveries however threads interleave."""
    disable_after_failures: int = 0
    """Consecutive failed deliveries (non-2xx or no answer) after which an integration is
    disabled, as CallRail does; 0: never."""


KNOB_RANGES: dict[str, tuple[type[int] | type[float], float, float]] = {
    "post_call_delay": (float, 0.0, math.inf),
    "delivery_timeout": (float, 0.001, math.inf),
    "delivery_drop_rate": (float, 0.0, 1.0),
    "delivery_seed": (int, -math.inf, math.inf),
    "disable_after_failures": (int, 0, math.inf),
}
"""Knobs that are numbers within bounds: the type a value is turned into, and its bounds."""


def _in_range(name: str, value: Any) -> Any:
    """A knob's value as its type, or a ValueError if it is not one or out of bounds."""
    kind, low, high = KNOB_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if not low <= value <= high or (kind is int and value != int(value)):
        raise ValueError(f"{name} must be a {kind.__name__} from {low} to {high}")
    return kind(value)


class Faults:
    """The knobs in force, the quota's sliding windows and the dice for random failures.

    Thread-safe: every request thread of the server asks it what to do.
    """

    def __init__(self, knobs: Knobs | None = None) -> None:
        self._lock = threading.Lock()
        self.knobs = knobs or Knobs()
        self._rng = random.Random(self.knobs.failure_seed)
        self._accepted: dict[QuotaUnit, deque[float]] = {}

    def reset(self) -> None:
        """Knobs return to their defaults and the quota windows empty."""
        with self._lock:
            self._accepted.clear()
            self.knobs = Knobs()
            self._rng = random.Random(self.knobs.failure_seed)

    def set_knobs(self, **changes: Any) -> None:
        """Turn the named knobs; an unknown name is a ValueError and changes nothing after it."""
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.knobs, name):
                    raise ValueError(f"unknown knob {name}")
                if name == "rate_limits":
                    value = [(int(n), float(w)) for n, w in value]
                if name in KNOB_RANGES:
                    value = _in_range(name, value)
                setattr(self.knobs, name, value)
            self._rng = random.Random(self.knobs.failure_seed)

    def pick(self) -> str | None:
        """The failure this request suffers: the next scripted one, else a random draw."""
        with self._lock:
            if self.knobs.fail_next:
                failure: str | None = self.knobs.fail_next.pop(0)
            elif self.knobs.failure_rate and self._rng.random() < self.knobs.failure_rate:
                failure = self._rng.choice(self.knobs.failure_kinds)
            else:
                failure = None
        return None if failure == "ok" else failure

    def fail(self, failure: str | None) -> None:
        """Raise the reply a failure gives in place of handling the request, if it gives one.

        A "timeout" ends in a 503 once the server has hung `hang` seconds (`gate.py` waits).
        """
        if failure == "timeout":
            raise error(503, "Service Unavailable")
        if failure == "429":
            raise self.too_many(self.knobs.scripted_retry_after)
        if failure in ("500", "503"):
            raise Reply(int(failure), text=RAILS_ERROR_PAGE)

    def admit(self, unit: QuotaUnit) -> None:
        """Count a request against the quota of `unit`, or raise the 429 that refuses it.

        Sliding windows: a request is refused if any window already holds its limit. Refused
        requests do not count (unverified upstream; the stricter reading would only make our
        budget look better than it is).
        """
        with self._lock:
            limits = self.knobs.rate_limits
            if not limits:
                return
            now = time.monotonic()
            stamps = self._accepted.setdefault(unit, deque())
            longest = max(w for _, w in limits)
            while stamps and stamps[0] <= now - longest:
                stamps.popleft()
            wait = 0.0
            for limit, window in limits:
                in_window = (
                    [t for t in stamps if t > now - window] if window < longest else list(stamps)
                )
                if len(in_window) >= limit:
                    wait = max(wait, in_window[len(in_window) - limit] + window - now)
            if wait <= 0:
                stamps.append(now)
                return
        raise self.too_many(wait)

    def too_many(self, wait: float) -> Reply:
        """A 429, with `Retry-After` (whole seconds, at least 1) when the knob says so."""
        headers = (
            {"Retry-After": str(max(1, math.ceil(wait)))} if self.knobs.send_retry_after else {}
        )
        return error(429, "Too many requests", headers)
