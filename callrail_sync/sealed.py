"""Secrets at rest: the signing keys we copy from CallRail and the notification secrets we
make are stored encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`).

SECRETS_KEYS holds Fernet keys, comma-separated, newest first: values are sealed with the
first and opened with any (`MultiFernet`), so a key is rotated by putting a new one first,
and the old one is dropped once every value has been written again (`Sealer.reseal`).
A sealed value is stored as `fernet:<token>`; a value without that prefix (written before
encryption was turned on) is read as it is. Without SECRETS_KEYS values are stored in plain
text: development only (`sealer_for` refuses to start without it otherwise; docs/security.md).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pymongo.collection import Collection

from callrail_sync.config import Settings

PREFIX = "fernet:"
NO_KEYS = (
    "SECRETS_KEYS is not set: signing keys and notification secrets would be stored in plain "
    "text (set it to a Fernet key, or DEVELOPMENT=true to accept that)"
)
log = logging.getLogger("callrail_sync.sealed")


class SecretsKeysMissing(RuntimeError):
    """Raised at start outside development when SECRETS_KEYS is not set."""


def sealer_for(settings: Settings) -> Sealer:
    """The sealer of these settings. Without SECRETS_KEYS: outside DEVELOPMENT (the rule a
    short JWT secret follows) a refusal to start, in one line; in development plain text,
    with a warning (once a process)."""
    if settings.secrets_keys.strip():
        return Sealer(settings.secrets_keys)
    if not settings.development:
        raise SecretsKeysMissing(NO_KEYS)
    _warn_plain_text()
    return Sealer()


@functools.cache
def _warn_plain_text() -> None:
    log.warning("SECRETS_KEYS is not set: secrets are stored in plain text (development only)")


class Sealer:
    """Seals and opens the secrets the stores keep."""

    def __init__(self, keys: str = "") -> None:
        found = [k.strip() for k in keys.split(",") if k.strip()]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in found]) if found else None

    @property
    def sealing(self) -> bool:
        return self._fernet is not None

    def seal(self, text: str) -> str:
        if self._fernet is None:
            return text
        return PREFIX + self._fernet.encrypt(text.encode()).decode()

    def open(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value  # stored before encryption was turned on
        if self._fernet is None:
            raise RuntimeError("a secret is sealed, and SECRETS_KEYS is not set")
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise RuntimeError("a secret is sealed with a key SECRETS_KEYS does not hold") from None

    def reseal(self, value: str) -> str:
        """The value sealed with the newest key (plain text sealed, an old key's re-sealed)."""
        if self._fernet is None:
            return value
        if not value.startswith(PREFIX):
            return self.seal(value)
        return PREFIX + self._fernet.rotate(value[len(PREFIX) :].encode()).decode()


def reseal_documents(documents: Collection[Any], sealer: Sealer, fields: tuple[str, ...]) -> int:
    """Write every stored value of `fields` again, sealed with the newest key (a plain one
    sealed), so that an older key can be dropped from SECRETS_KEYS. A document changed
    meanwhile (a rotation) is left as it is: its values were just sealed with the newest key.
    Answers how many documents were written."""
    if not sealer.sealing:
        raise SecretsKeysMissing("reseal needs SECRETS_KEYS (the newest key first)")
    written = 0
    for doc in documents.find({}, dict.fromkeys(fields, 1)):
        old = {f: doc[f] for f in fields if isinstance(doc.get(f), str) and doc[f]}
        if old:
            new = {f: sealer.reseal(value) for f, value in old.items()}
            done = documents.update_one({"_id": doc["_id"], **old}, {"$set": new})
            written += done.modified_count
    return written
