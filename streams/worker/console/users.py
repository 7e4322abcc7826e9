"""The console's users file (docs/CONSOLE.md, "Access"): who may log in, with which
role, password hash and API tokens. `ioc users …` writes it; every worker reads it.

```json
{"users": {"lan": {"role": "operator", "password": "$argon2id$…", "tokens": ["<sha256>"]}}}
```

The file never holds a secret in the clear: passwords are argon2id hashes, API tokens
their SHA-256 (a token is 256 random bits, so a fast hash is enough; a slow one would
cost every API request).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "NAME_PATTERN",
    "ROLES",
    "Role",
    "UserRecord",
    "UsersFile",
    "UsersFileError",
    "hash_password",
    "load_users",
    "new_token",
    "save_users",
    "token_digest",
    "token_matches",
    "verify_password",
]

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
MIN_PASSWORD_LENGTH = 8
#: A name goes into `ioc.alert-actions` records and the page; keep it plain.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# RFC 9106's second recommended profile (argon2id, 64 MiB, t=3, p=4): the library's default.
_HASHER = PasswordHasher()


class UsersFileError(Exception):
    """The users file exists but cannot be read as one (bad JSON or fields)."""


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    password: str = Field(description="argon2 hash (PHC string)")
    tokens: list[str] = Field(default_factory=list, description="SHA-256 hex of API tokens")


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: dict[str, UserRecord] = Field(default_factory=dict)


def load_users(path: Path) -> UsersFile:
    """The users in `path`; a missing file has none."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return UsersFile()
    try:
        return UsersFile.model_validate_json(text)
    except ValidationError as exc:
        # Locations and messages only: pydantic would quote the input, a hash or a digest.
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '<file>'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise UsersFileError(f"{path}: not a valid users file ({problems})") from None


def save_users(path: Path, users: UsersFile) -> None:
    """Write `users` to `path` atomically (a reader sees the old file or the new one,
    never half of one), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = users.model_dump_json(indent=2).encode() + b"\n"
    # mkstemp creates the file 0600 in the same directory, so the rename is atomic
    # and the hashes are never readable by others, not even for a moment.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    return hasher.hash(password)


def verify_password(hashed: str, password: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Whether `password` matches `hashed`; a malformed hash matches nothing. The hash's
    own parameters decide the cost, whatever `hasher` was built with."""
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str]:
    """A new API token and the digest the users file keeps of it."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, digests: Iterable[str]) -> bool:
    """Whether `token` is one of `digests`, comparing every digest in constant time
    (no early exit, so the time says nothing about which or how many matched)."""
    digest = token_digest(token).encode()
    found = False
    for candidate in digests:
        found |= hmac.compare_digest(digest, candidate.encode())
    return found
