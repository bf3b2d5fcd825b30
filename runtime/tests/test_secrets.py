"""Bucket tokens: encrypted at rest, decryptable by services sharing the key, rotatable."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from rbr_runtime.secrets import (
    _KDF_INFO,
    TokenDecryptionError,
    TokenVault,
    _derive,
    constant_time_in,
)

TOKEN = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6"


def test_ciphertext_hides_the_token_and_decrypts_back() -> None:
    vault = TokenVault.from_setting("local-secret")
    ciphertext = vault.encrypt(TOKEN)
    assert TOKEN not in ciphertext
    assert ciphertext != vault.encrypt(TOKEN)
    assert TokenVault.from_setting("local-secret").decrypt(ciphertext) == TOKEN


def test_another_key_cannot_decrypt_and_says_which_setting_to_check() -> None:
    ciphertext = TokenVault.from_setting("key-one").encrypt(TOKEN)
    with pytest.raises(TokenDecryptionError, match="RBR_SECRET_KEY") as raised:
        TokenVault.from_setting("key-two").decrypt(ciphertext)
    assert TOKEN not in str(raised.value)


def test_rotation_new_key_first_old_key_still_decrypts() -> None:
    old = TokenVault.from_setting("old-key").encrypt(TOKEN)
    rotated = TokenVault.from_setting("new-key,old-key")
    assert rotated.decrypt(old) == TOKEN
    assert TokenVault.from_setting("new-key").decrypt(rotated.encrypt(TOKEN)) == TOKEN


def test_fingerprint_matches_only_the_same_token() -> None:
    vault = TokenVault.from_setting("local-secret")
    stored = vault.fingerprint(TOKEN)
    assert vault.matches(TOKEN, stored)
    assert not vault.matches(TOKEN[:-1] + "x", stored)
    assert TOKEN not in stored


def test_constant_time_membership() -> None:
    assert constant_time_in("key-2", ["key-1", "key-2"])
    assert not constant_time_in("key-3", ["key-1", "key-2"])
    assert not constant_time_in("", [])


def test_rotation_a_fingerprint_made_with_an_old_key_still_matches() -> None:
    stored = TokenVault.from_setting("old-key").fingerprint(TOKEN)
    rotated = TokenVault.from_setting("new-key,old-key")
    assert rotated.matches(TOKEN, stored)
    assert not rotated.matches(TOKEN[:-1] + "x", stored)
    assert rotated.fingerprint(TOKEN) == TokenVault.from_setting("new-key").fingerprint(TOKEN)
    assert rotated.fingerprints(TOKEN) == [rotated.fingerprint(TOKEN), stored]
    assert not TokenVault.from_setting("new-key").matches(TOKEN, stored), "old key dropped"


def test_a_token_stored_under_an_old_key_is_restored_under_the_current_one() -> None:
    old = TokenVault.from_setting("old-key")
    rotated = TokenVault.from_setting("new-key,old-key")
    new_only = TokenVault.from_setting("new-key")
    # Both, only the ciphertext, or only the hash made with the old key: each is stale.
    stale = [
        (old.encrypt(TOKEN), old.fingerprint(TOKEN)),
        (old.encrypt(TOKEN), new_only.fingerprint(TOKEN)),
        (new_only.encrypt(TOKEN), old.fingerprint(TOKEN)),
    ]
    for ciphertext, token_hash in stale:
        restored = rotated.restored(ciphertext, token_hash)
        assert restored is not None
        assert new_only.decrypt(restored.ciphertext) == TOKEN
        assert restored.token_hash == new_only.fingerprint(TOKEN)
        assert TOKEN not in repr(restored)
        assert rotated.restored(restored.ciphertext, restored.token_hash) is None, "now current"


def test_restoring_a_token_no_key_decrypts_raises() -> None:
    lost = TokenVault.from_setting("lost-key")
    with pytest.raises(TokenDecryptionError):
        TokenVault.from_setting("new-key,old-key").restored(
            lost.encrypt(TOKEN), lost.fingerprint(TOKEN)
        )


def test_vault_ciphertexts_are_fernet_tokens_of_the_derived_key() -> None:
    ciphertext = TokenVault.from_setting("local-secret").encrypt(TOKEN)
    key = base64.urlsafe_b64encode(_derive("local-secret", _KDF_INFO))
    assert Fernet(key).decrypt(ciphertext.encode()) == TOKEN.encode()
