"""Secrets at rest: the signing keys we copy from CallRail and the notification secrets we
make are stored encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`).

SECRETS_KEYS holds Fernet keys, comma-separated, newest first: values are sealed with the
first and opened with any (`MultiFernet`), so a key is rotated by putting a new one first,
and the old one is dropped once every value has been written again (`Sealer.reseal`).
A sealed value is stored as `fernet:<token>`; a value without that prefix (written before
encryption was turned on) is read as it is. Without SECRETS_KEYS values are stored in plain
text: development only (docs/security.md).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"


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
