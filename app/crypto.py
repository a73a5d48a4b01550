"""Encryption of shop secrets at rest (Fernet, keys from the environment, rotation by MultiFernet)."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


def encrypt(keys: str, plaintext: str) -> bytes:
    """Encrypt `plaintext` with the first of the comma-separated Fernet `keys`."""
    return _fernet(keys).encrypt(plaintext.encode("utf-8"))


@lru_cache(maxsize=1024)
def decrypt(keys: str, token: bytes) -> str:
    """Decrypt a token made by `encrypt` with any of `keys`.

    Cached: the webhook view decrypts the same shop secret on every request.

    Raises:
        SecretDecryptionError: no configured key opens the token.
    """
    try:
        return _fernet(keys).decrypt(bytes(token)).decode("utf-8")
    except InvalidToken:
        raise SecretDecryptionError("stored secret cannot be decrypted with ENCRYPTION_KEY") from None
