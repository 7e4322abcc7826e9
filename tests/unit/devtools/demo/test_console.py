"""The demo's console users: added, or reset on a second run, with this run's passwords."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.devtools.demo.console import DEMO_USERS, demo_password, prepare_demo_users
from streams.worker.console.users import (
    UserRecord,
    UsersFile,
    UsersFileError,
    hash_password,
    load_users,
    save_users,
    token_matches,
    verify_password,
)


def test_a_first_run_adds_an_operator_and_a_viewer_with_random_passwords(tmp_path: Path):
    users_file = tmp_path / "data" / "users.json"
    logins = prepare_demo_users(users_file)
    assert logins.users_file == users_file and logins.reset == ()
    assert list(logins.passwords) == ["operator", "viewer"]
    assert DEMO_USERS == {"operator": "operator", "viewer": "viewer"}
    users = load_users(users_file).users
    assert {name: record.role for name, record in users.items()} == DEMO_USERS
    for name, password in logins.passwords.items():
        assert len(password) >= 16
        assert verify_password(users[name].password, password)
        assert password not in users_file.read_text()  # hashes only
    assert logins.passwords["operator"] != logins.passwords["viewer"]
    # The demo's own token reads /sinks as the viewer; the operator has none.
    assert token_matches(logins.token, users["viewer"].tokens)
    assert users["operator"].tokens == []
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600


def test_a_second_run_resets_the_demo_users_and_leaves_the_others(tmp_path: Path):
    users_file = tmp_path / "users.json"
    lan = UserRecord(role="operator", password=hash_password("lan-password"), tokens=["ab" * 32])
    demoted = UserRecord(role="viewer", password=hash_password("old-password"), tokens=["cd" * 32])
    save_users(users_file, UsersFile(users={"lan": lan, "operator": demoted}))

    first = prepare_demo_users(users_file)
    assert first.reset == ("operator",)
    second = prepare_demo_users(users_file)
    assert second.reset == ("operator", "viewer")
    assert second.passwords != first.passwords and second.token != first.token

    users = load_users(users_file).users
    assert users["lan"] == lan  # not a demo user: untouched
    assert users["operator"].role == "operator"  # the demo's role back
    assert users["operator"].tokens == []
    for name in DEMO_USERS:
        assert verify_password(users[name].password, second.passwords[name])
        assert not verify_password(users[name].password, first.passwords[name])
    assert not verify_password(users["operator"].password, "old-password")
    assert users["viewer"].tokens and token_matches(second.token, users["viewer"].tokens)
    assert not token_matches(first.token, users["viewer"].tokens)


def test_an_unreadable_users_file_is_left_as_it_is(tmp_path: Path):
    users_file = tmp_path / "users.json"
    users_file.write_text('{"users": {"lan": {"role": "admin"}}}')
    with pytest.raises(UsersFileError):
        prepare_demo_users(users_file)
    assert users_file.read_text() == '{"users": {"lan": {"role": "admin"}}}'


def test_passwords_are_random_and_need_no_quoting():
    passwords = {demo_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 16 and p.replace("-", "").replace("_", "").isalnum() for p in passwords)
