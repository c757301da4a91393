"""Structured JSON logs, with secrets scrubbed from every line.

One JSON object per line: time, level, logger, message, and the context fields a line carries
(job_id, job_type, owner, callrail_account_id, page, attempt, ...). The scrubbing is done on
the final formatted line (`Scrubbing`, a formatter around the real one), whatever produced it:
a dict in `extra`, an exception's text, a library's message. It is installed on our root
handler and on uvicorn's own handlers (its access log prints the request line, where stream
tickets travel): API keys the process has used are replaced by their fingerprint, and anything
shaped like a JWT, a `Token token=` or `Bearer` credential, an `api_key` / `signing_key` /
`secret` field, a notification secret (`whsec_`) or a stream ticket (`tkt_`) by `[REDACTED]`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from callrail_sync.budget import fingerprint

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r'(?i)(token\s+token=\\*"?)[^"\\\s,]+'),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # `api_key` and `signing_key` fields however they are quoted, at any depth of JSON escaping
    # (the MongoDB driver logs commands and replies as JSON inside JSON: \"api_key\": \"...\").
    re.compile(
        r'(?i)(\\*[\'"]?(?:api_key|signing_key|secret)\\*[\'"]?\s*[:=]\s*\\*[\'"]?)[^\'"\\\s,}]+'
    ),
    re.compile(r"whsec_[A-Za-z0-9_-]+"),  # a notification secret
    re.compile(r"tkt_[A-Za-z0-9_-]+"),  # a stream ticket
    re.compile(r"(?i)(ticket=)[^&\s\"']+"),  # a ticket in a URL, whatever its shape
]
_known_keys: set[str] = set()
_lock = threading.Lock()


def register_secret(api_key: str) -> None:
    """Scrub this key from every log line from now on (the runtime calls it for each key)."""
    if api_key and len(api_key) >= 6:
        with _lock:
            _known_keys.add(api_key)


def scrub(text: str) -> str:
    for key in list(_known_keys):
        if key in text:
            text = text.replace(key, f"[key {fingerprint(key)}]")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, arguments and exception text with secrets scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, scrub(value))
        return True


class Scrubbing(logging.Formatter):
    """Formats with `inner`, then scrubs the whole line: what the filter cannot see (a dict in
    `extra`, a formatter's own additions) is caught here."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record))


def scrub_handlers(*loggers: str) -> None:
    """Scrub the final lines of these loggers' own handlers (uvicorn's, which do not
    propagate to ours); idempotent."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            current = handler.formatter or logging.Formatter()
            if not isinstance(current, Scrubbing):
                handler.setFormatter(Scrubbing(current))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = (
                    value if isinstance(value, (int, float, bool, type(None))) else str(value)
                )
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line)


def setup_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send every logger to stderr through the scrubbing filter (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_callrail_sync", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._callrail_sync = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        Scrubbing(
            JsonFormatter()
            if json_lines
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Chatty libraries stay at WARNING even when we debug: the MongoDB driver's DEBUG lines
    # are whole commands and replies (documents included), scrubbed or not.
    for noisy in ("urllib3", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
