"""Client secrets at rest: keys from BC_SYNC_SECRET_KEY, rotation, and clear errors."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from worker.config.crypto import (
    GENERATE_HINT,
    SecretBox,
    SecretDecryptError,
    SecretKeyError,
)
from worker.config.settings import Settings

SECRET = "Qx8~k3.client-secret-value"


def key() -> str:
    return Fernet.generate_key().decode()


def test_a_secret_round_trips_and_the_ciphertext_does_not_contain_it() -> None:
    box = SecretBox([key()])
    token = box.encrypt(SECRET)
    assert SECRET not in token
    assert box.decrypt(token) == SECRET
    # Fresh IV every time: equal secrets do not give equal ciphertexts.
    assert box.encrypt(SECRET) != token


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = key(), key()
    made_with_old = SecretBox([old]).encrypt(SECRET)
    both = SecretBox.from_setting(f"{new}, {old}")
    assert both.key_count == 2
    assert both.decrypt(made_with_old) == SECRET
    assert not both.is_current(made_with_old)
    assert SecretBox([new]).decrypt(both.encrypt(SECRET)) == SECRET


def test_rotate_re_encrypts_under_the_first_key() -> None:
    old, new = key(), key()
    token = SecretBox([old]).encrypt(SECRET)
    rotated = SecretBox([new, old]).rotate(token)
    assert SecretBox([new]).decrypt(rotated) == SECRET
    with pytest.raises(SecretDecryptError):
        SecretBox([old]).decrypt(rotated)


def test_a_secret_made_with_an_unknown_key_gives_a_clear_error() -> None:
    token = SecretBox([key()]).encrypt(SECRET)
    with pytest.raises(SecretDecryptError) as caught:
        SecretBox([key()]).decrypt(token)
    message = str(caught.value)
    assert "BC_SYNC_SECRET_KEY" in message
    assert token not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_a_missing_key_names_the_setting_and_how_to_make_one(value: str) -> None:
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.from_setting(value)
    assert "BC_SYNC_SECRET_KEY is not set" in str(caught.value)
    assert GENERATE_HINT in str(caught.value)


@pytest.mark.parametrize("bad", ["not-a-key", "c2hvcnQ=", "x" * 44])
def test_a_bad_key_is_named_without_quoting_it(bad: str) -> None:
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.from_setting(f"{key()},{bad}")
    message = str(caught.value)
    assert message.startswith("BC_SYNC_SECRET_KEY: key 2 of 2 is not a valid Fernet key")
    assert GENERATE_HINT in message
    assert bad not in message
    # No chained traceback from cryptography's internals.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_the_configured_key_is_used() -> None:
    own = key()
    box = SecretBox.from_settings(Settings(secret_key=own))
    assert SecretBox([own]).decrypt(box.encrypt(SECRET)) == SECRET


def test_a_key_is_required_there_is_no_built_in_one() -> None:
    with pytest.raises(SecretKeyError, match="BC_SYNC_SECRET_KEY is not set"):
        SecretBox.from_settings(Settings(secret_key=None))


def test_the_box_never_shows_its_keys() -> None:
    secret_key = key()
    box = SecretBox([secret_key])
    assert secret_key not in repr(box)
    assert secret_key not in str(vars(box))
