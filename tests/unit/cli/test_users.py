"""`ioc users add|token|remove|list` on the console's users file."""

from __future__ import annotations

import getpass
import io
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.cli import main
from streams.worker.console.users import load_users, token_digest, verify_password

PASSWORD = "correct horse battery"


@pytest.fixture
def users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "console" / "users.json"
    monkeypatch.setenv("IOC_CONSOLE__USERS_FILE", str(path))
    return path


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def add(monkeypatch: pytest.MonkeyPatch, name: str, role: str, password: str = PASSWORD) -> int:
    stdin(monkeypatch, password + "\n")
    return main(["users", "add", name, "--role", role, "--password-stdin"])


def test_add_writes_a_hash_for_the_owner_only(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert add(monkeypatch, "lan", "operator") == 0
    record = load_users(users_file).users["lan"]
    assert record.role == "operator" and record.tokens == []
    assert verify_password(record.password, PASSWORD)
    assert PASSWORD not in users_file.read_text()
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert "lan (operator) added" in capsys.readouterr().out


def test_the_data_dir_holds_the_file_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("IOC_CONSOLE__USERS_FILE", raising=False)
    monkeypatch.setenv("IOC_DATA_DIR", str(tmp_path))
    assert add(monkeypatch, "lan", "viewer") == 0
    assert load_users(tmp_path / "users.json").users["lan"].role == "viewer"


def test_add_refuses_short_passwords_bad_names_and_existing_users(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert add(monkeypatch, "lan", "operator", "short") == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert add(monkeypatch, "<lan>", "operator") == 1
    assert not users_file.exists()
    assert add(monkeypatch, "lan", "operator") == 0
    assert add(monkeypatch, "lan", "viewer") == 1
    assert "lan exists" in capsys.readouterr().err
    assert load_users(users_file).users["lan"].role == "operator"


def test_add_asks_twice_and_the_passwords_must_match(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def typed(*answers: str) -> None:
        given: Iterator[str] = iter(answers)
        monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(given))

    typed(PASSWORD, PASSWORD + "x")
    assert main(["users", "add", "lan", "--role", "operator"]) == 1
    assert "differ" in capsys.readouterr().err and not users_file.exists()
    typed(PASSWORD, PASSWORD)
    assert main(["users", "add", "lan", "--role", "operator"]) == 0
    assert verify_password(load_users(users_file).users["lan"].password, PASSWORD)


def test_a_role_is_required_and_one_of_two():
    with pytest.raises(SystemExit):
        main(["users", "add", "lan"])
    with pytest.raises(SystemExit):
        main(["users", "add", "lan", "--role", "admin"])


def test_token_prints_a_new_token_once_and_the_file_keeps_its_sha256(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert add(monkeypatch, "lan", "operator") == 0
    capsys.readouterr()
    assert main(["users", "token", "lan"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["users", "token", "lan"]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second and len(first) >= 43
    assert load_users(users_file).users["lan"].tokens == [token_digest(first), token_digest(second)]
    assert first not in users_file.read_text()
    assert main(["users", "token", "nobody"]) == 1


def test_list_shows_names_and_roles_never_hashes(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert main(["users", "list"]) == 0  # no file yet: nobody
    assert capsys.readouterr().out == ""
    assert add(monkeypatch, "minh", "viewer") == 0
    assert add(monkeypatch, "lan", "operator") == 0
    assert main(["users", "token", "lan"]) == 0
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["lan\toperator\t1 API token(s)", "minh\tviewer\t0 API token(s)"]
    assert "$argon2" not in out


def test_remove_takes_the_user_and_their_tokens(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert add(monkeypatch, "lan", "operator") == 0
    assert main(["users", "remove", "lan"]) == 0
    assert load_users(users_file).users == {}
    assert main(["users", "remove", "lan"]) == 1
    assert "no user lan" in capsys.readouterr().err


def test_an_invalid_users_file_is_reported_not_overwritten(
    users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    users_file.parent.mkdir(parents=True)
    users_file.write_text("{broken")
    assert add(monkeypatch, "lan", "operator") == 1
    assert "not a valid users file" in capsys.readouterr().err
    assert users_file.read_text() == "{broken"
