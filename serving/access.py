"""Who may ask the API: API keys, stored as hashes and compared in constant time (pure).

A key is 32 random bytes, URL-safe base64 (``cs_`` + 43 characters); the settings hold only
``sha256:<hex>`` of it per key name (``serving.api_keys``), so a leaked settings file leaks no
key. A key is this high in entropy, so one SHA-256 is enough (a slow password hash protects
guessable secrets, not random ones). A request presents it as ``Authorization: Bearer <key>``
or ``X-API-Key: <key>``; every stored hash is compared with :func:`hmac.compare_digest`,
whatever matched before, so the time taken does not tell which name or prefix matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final

PREFIX: Final = "cs_"
HASH_SCHEME: Final = "sha256:"


def new_key() -> str:
    """A new random API key."""
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``."""
    return HASH_SCHEME + hashlib.sha256(key.encode("utf-8")).hexdigest()


def valid_hash(stored: str) -> bool:
    """Whether ``stored`` is a hash this module makes (a setting typo is refused at start)."""
    digest = stored.removeprefix(HASH_SCHEME)
    return (
        stored.startswith(HASH_SCHEME)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )


def key_name(presented: str | None, keys: Mapping[str, str]) -> str | None:
    """The name of the key ``presented`` is, or None (also for no key)."""
    if not presented:
        return None
    wanted = key_hash(presented).encode()
    found = None
    for name, stored in keys.items():  # every hash compared, whichever matches
        if hmac.compare_digest(wanted, stored.encode()):
            found = name
    return found
