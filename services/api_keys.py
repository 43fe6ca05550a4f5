"""Keys for the HTTP API's writes: made with a name, shown once, stored as a SHA-256 hash (a key is 32
random bytes, so a fast hash is enough), listed and revoked by name. The key's name is who made a change."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from db.session import session_scope
from db.tables import ApiKey, utc_now

KEY_PREFIX = "mkb_"
MAX_NAME_CHARS = 100


class ApiKeyError(ValueError):
    """The key cannot be made or revoked as asked; the message says why."""


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(engine: Engine, name: str) -> str:
    """A new key for `name` (unique); returns the key itself, which is stored nowhere."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ApiKeyError(f"give the key a name of 1 to {MAX_NAME_CHARS} printable characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with session_scope(engine) as session:
            session.add(ApiKey(name=name, key_hash=_hash(key), prefix=key[: len(KEY_PREFIX) + 6]))
    except IntegrityError as error:
        raise ApiKeyError(f"a key named {name!r} exists already: revoke it or choose another name") from error
    return key


def list_api_keys(engine: Engine) -> list[ApiKeyInfo]:
    with session_scope(engine) as session:
        keys = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
        return [ApiKeyInfo(key.name, key.prefix, key.created_at, key.revoked_at, key.last_used_at) for key in keys]


def revoke_api_key(engine: Engine, name: str) -> None:
    with session_scope(engine) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.name == " ".join(name.split())))
        if key is None:
            raise ApiKeyError(f"no key named {name!r}")
        if key.revoked_at is None:
            key.revoked_at = utc_now()


def key_holder(engine: Engine, key: str) -> str | None:
    """The name of the live key `key`, or None (unknown or revoked); its last use is recorded."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    with session_scope(engine) as session:
        found = session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(key), ApiKey.revoked_at.is_(None)))
        if found is None:
            return None
        found.last_used_at = utc_now()
        return found.name
