"""The demo's console users: `operator` and `viewer` in the users file the demo's worker
reads (docs/CONSOLE.md, "Access"; by default `<data_dir>/users.json`).

Each run gives both a new random password, printed once the worker is ready: a user
that is missing is added, one that exists (a second run with the same data directory)
gets its role back and its password reset, since the file keeps only hashes and the
old password cannot be shown again. Their API tokens are reset too: `viewer` keeps one
token only, the run's own, with which the demo reads the worker's `/sinks` (it needs a
login since the console). Other users of the file are left alone. Nothing secret is in
the repository: the passwords and the token live in this process and, hashed, in the
users file.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streams.worker.console.users import (
    Role,
    UserRecord,
    hash_password,
    load_users,
    new_token,
    save_users,
)

__all__ = ["DEMO_USERS", "DemoLogins", "demo_password", "prepare_demo_users"]

#: name → role of the demo's users, in the order the demo prints them.
DEMO_USERS: Final[dict[str, Role]] = {"operator": "operator", "viewer": "viewer"}
#: The user whose API token the demo itself uses (reading `/sinks` needs no more).
_READER: Final = "viewer"


@dataclass(frozen=True)
class DemoLogins:
    """What the demo made in the users file: the passwords to print, which users were
    there already (reset), and the token of the demo's own reads."""

    users_file: Path
    passwords: dict[str, str]  # name → password, in DEMO_USERS order
    reset: tuple[str, ...]  # the demo users that existed before this run
    token: str  # an API token of `viewer`, for the demo's own reads

    def role(self, name: str) -> Role:
        return DEMO_USERS[name]


def demo_password() -> str:
    """A random password: 96 bits, 16 URL-safe characters (easy to copy, no quoting)."""
    return secrets.token_urlsafe(12)


def prepare_demo_users(users_file: Path) -> DemoLogins:
    """Add or reset the demo's users in `users_file` (written atomically, 0600) and
    return their new passwords. Raises UsersFileError when the file cannot be read as
    a users file (it is then left as it is)."""
    users = load_users(users_file)
    passwords = {name: demo_password() for name in DEMO_USERS}
    reset = tuple(name for name in DEMO_USERS if name in users.users)
    token, digest = new_token()
    for name, role in DEMO_USERS.items():
        users.users[name] = UserRecord(
            role=role,
            password=hash_password(passwords[name]),
            tokens=[digest] if name == _READER else [],
        )
    save_users(users_file, users)
    return DemoLogins(users_file=users_file, passwords=passwords, reset=reset, token=token)
