"""Client secrets encrypted at rest with Fernet keys from ``BC_SYNC_SECRET_KEY``.

The setting holds one or more comma-separated keys: the first encrypts, every key decrypts, so
a key is rotated by putting a new key first, running ``Store.rotate()`` and then dropping the old
key. Error messages name the setting and never contain a key or a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from worker.config.settings import Settings


SETTING = "BC_SYNC_SECRET_KEY"
GENERATE_HINT = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class SecretKeyError(Exception):
    """``BC_SYNC_SECRET_KEY`` is missing or malformed; the message says how to fix it."""


class SecretDecryptError(SecretKeyError):
    """A stored secret cannot be decrypted with any configured key."""


class SecretBox:
    """Encrypts and decrypts client secrets; ``keys[0]`` encrypts, all keys decrypt."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        parts = [k.strip() for k in keys if k and k.strip()]
        if not parts:
            raise SecretKeyError(
                f"{SETTING} is not set: it encrypts client secrets at rest. Generate a key with "
                f"{GENERATE_HINT} and set {SETTING} to it."
            )
        fernets: list[Fernet] = []
        for number, key in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                which = f"key {number} of {len(parts)}" if len(parts) > 1 else "the key"
                raise SecretKeyError(
                    f"{SETTING}: {which} is not a valid Fernet key (32 url-safe base64-encoded "
                    f"bytes). Generate one with {GENERATE_HINT}"
                ) from None
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)
        self.key_count = len(fernets)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """From the setting's text: keys separated by commas."""
        return cls(value.split(","))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """From process settings (``BC_SYNC_SECRET_KEY``; there is no built-in key)."""
        value = settings.secret_key.get_secret_value() if settings.secret_key else ""
        return cls.from_setting(value)

    def encrypt(self, secret: str) -> str:
        """Ciphertext (ASCII) of ``secret`` under the first key."""
        return self._primary.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The secret; :class:`SecretDecryptError` when no configured key fits."""
        return _with_keys(
            lambda: self._all.decrypt(token.encode("ascii")).decode("utf-8"),
            ": the key that encrypted it was removed or changed. Put that key back (after the "
            "first one) or save the integration again with its client secret.",
        )

    def rotate(self, token: str) -> str:
        """Re-encrypt ciphertext under the first key (it may have been made with any key)."""
        return _with_keys(
            lambda: self._all.rotate(token.encode("ascii")).decode("ascii"),
            ", so it cannot be re-encrypted; put the old key back after the new one.",
        )

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already encrypted under the first key."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def __repr__(self) -> str:
        return f"SecretBox(keys={self.key_count})"


def _with_keys(use: Callable[[], str], then: str) -> str:
    """``use()`` the configured keys on a stored ciphertext; none fits: :class:`SecretDecryptError`
    (its message goes on with ``then``)."""
    try:
        return use()
    except (InvalidToken, UnicodeError):
        raise SecretDecryptError(
            f"a stored client secret cannot be decrypted with the keys in {SETTING}{then}"
        ) from None
