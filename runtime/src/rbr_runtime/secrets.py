"""Bucket tokens at rest and in transit between services: encrypted, compared in constant time.

The registrar encrypts each bucket's token with a key derived from `RBR_SECRET_KEY` and
publishes only the ciphertext; the poller and log-extractor, configured with the same key,
decrypt it to call the bucket. Several comma-separated keys allow rotation: the first
encrypts and fingerprints, any decrypts, and a stored fingerprint made with any of them
matches (the registrar then re-stores the token under the first key, when the bucket
registers again or when an operator runs `rbr buckets rekey`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_KDF_INFO = b"rbr-bucket-token-encryption-v1"
_HASH_INFO = b"rbr-bucket-token-hash-v1"


class TokenDecryptionError(Exception):
    """The ciphertext was not made with any configured key (or was tampered with)."""


def _derive(secret: str, info: bytes) -> bytes:
    # HKDF would also do; HMAC-SHA256 over a fixed label is a sound KDF for a high-entropy
    # secret and keeps this dependency-free beyond `cryptography`.
    return hmac.new(secret.encode(), info, hashlib.sha256).digest()


@dataclass(frozen=True)
class StoredToken:
    """A token as the registrar stores it: its keyed hash and its ciphertext."""

    token_hash: str = field(repr=False)
    ciphertext: str = field(repr=False)


class TokenVault:
    """Encrypts, decrypts and fingerprints bucket tokens."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        keys = [key for key in secret_keys if key]
        if not keys:
            raise ValueError("at least one secret key is required")
        fernets = [Fernet(base64.urlsafe_b64encode(_derive(key, _KDF_INFO))) for key in keys]
        self._current = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._hash_keys = [_derive(key, _HASH_INFO) for key in keys]

    @classmethod
    def from_setting(cls, secret_key_setting: str) -> TokenVault:
        """Builds a vault from the comma-separated `RBR_SECRET_KEY` value."""
        return cls([key.strip() for key in secret_key_setting.split(",")])

    def encrypt(self, token: str) -> str:
        """Returns the token's ciphertext (different every call)."""
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Returns the token.

        Raises:
            TokenDecryptionError: no configured key made this ciphertext.
        """
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise TokenDecryptionError(
                "bucket token cannot be decrypted: RBR_SECRET_KEY differs from the registrar's"
            ) from None

    def restored(self, ciphertext: str, token_hash: str) -> StoredToken | None:
        """Returns a stored token again under the current key; None when it already is.

        A token is current when its ciphertext was made with the current key and its hash
        is the token's under the current key; otherwise (either was made with an older key)
        both are made again, from the token the ciphertext holds.

        Raises:
            TokenDecryptionError: no configured key made this ciphertext.
        """
        token = self.decrypt(ciphertext)
        current_hash = self.fingerprint(token)
        if self._made_with_current_key(ciphertext) and hmac.compare_digest(
            current_hash, token_hash
        ):
            return None
        return StoredToken(current_hash, self.encrypt(token))

    def _made_with_current_key(self, ciphertext: str) -> bool:
        try:
            self._current.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def fingerprint(self, token: str) -> str:
        """Returns a keyed hash of the token under the current (first) key."""
        return self.fingerprints(token)[0]

    def fingerprints(self, token: str) -> list[str]:
        """Returns the token's keyed hash under every configured key, the current one first."""
        return [
            hmac.new(key, token.encode(), hashlib.sha256).hexdigest() for key in self._hash_keys
        ]

    def matches(self, token: str, fingerprint: str) -> bool:
        """Tells whether a stored fingerprint is the token's under any configured key.

        Each key's hash is compared in constant time, and all are compared.
        """
        return constant_time_in(fingerprint, self.fingerprints(token))


def constant_time_in(candidate: str, allowed: Sequence[str]) -> bool:
    """Tells whether candidate equals one of the allowed secrets, in constant time for each."""
    found = False
    for secret in allowed:
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found
