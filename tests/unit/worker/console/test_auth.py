"""Console access (docs/CONSOLE.md, "Access"): the users file, passwords, API tokens,
signed sessions, CSRF tokens, and the middleware on aiohttp's own test server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streams.worker.console import auth as auth_module
from streams.worker.console.auth import (
    CSRF_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    USER,
    Auth,
    User,
    access_middleware,
    install,
)
from streams.worker.console.users import (
    Role,
    UserRecord,
    UsersFile,
    UsersFileError,
    hash_password,
    load_users,
    new_token,
    save_users,
    token_digest,
    token_matches,
    verify_password,
)
from streams.worker.settings import ConsoleSettings, Settings

# Cheap parameters: the tests check behaviour, not argon2's cost.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = b"s" * 32
PASSWORD = "correct horse battery"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def write_users(path: Path, roles: dict[str, Role], tokens: dict[str, str] | None = None) -> None:
    tokens = tokens or {}
    users = {
        name: UserRecord(
            role=role,
            password=hash_password(PASSWORD, FAST),
            tokens=[token_digest(tokens[name])] if name in tokens else [],
        )
        for name, role in roles.items()
    }
    save_users(path, UsersFile(users=users))


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    write_users(path, {"lan": "operator", "minh": "viewer"}, {"lan": "lan-token"})
    return path


def make_auth(path: Path, secret: bytes = SECRET, **options: Any) -> Auth:
    return Auth(path, secret=secret, hasher=FAST, **options)


# --- the users file, passwords, tokens ------------------------------------------------


def test_passwords_are_argon2id_hashes_that_verify():
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)


def test_tokens_are_random_and_kept_as_their_sha256(users_path: Path):
    token, digest = new_token()
    assert len(token) >= 43 and token != new_token()[0]
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token_matches(token, ["0" * 64, digest])
    assert not token_matches(token, ["0" * 64]) and not token_matches(token, [])
    stored = load_users(users_path).users["lan"].tokens
    assert stored == [token_digest("lan-token")] and "lan-token" not in users_path.read_text()


def test_the_users_file_is_written_for_its_owner_only_and_read_back(users_path: Path):
    assert stat.S_IMODE(users_path.stat().st_mode) == 0o600
    assert sorted(load_users(users_path).users) == ["lan", "minh"]
    assert list(users_path.parent.iterdir()) == [users_path]  # no temporary left


def test_a_missing_users_file_has_no_users(tmp_path: Path):
    assert load_users(tmp_path / "none.json").users == {}


def test_an_invalid_users_file_is_reported_without_its_content(tmp_path: Path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"lan": {"role": "root", "password": "$argon2id$x"}}}))
    with pytest.raises(UsersFileError) as raised:
        load_users(path)
    assert "users.lan.role" in str(raised.value) and "$argon2id$x" not in str(raised.value)


# --- sessions, CSRF, bearer tokens ------------------------------------------------------


def test_a_session_names_its_user_and_role(users_path: Path):
    auth = make_auth(users_path)
    cookie = auth.new_session("lan")
    assert cookie is not None
    assert auth.session(cookie) == User("lan", "operator", "session")
    assert auth.new_session("nobody") is None


def test_a_tampered_session_is_refused(users_path: Path):
    auth = make_auth(users_path)
    viewer = auth.new_session("minh")
    assert viewer is not None
    body, signature = viewer.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(user="lan", role="operator")
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert auth.session(f"{forged}.{signature}") is None
    assert auth.session(f"{body}.{signature[:-2]}AA") is None
    assert auth.session(body) is None
    assert auth.session("") is None
    assert auth.session("é." + signature) is None


def test_a_session_expires(users_path: Path):
    now = [1_000_000.0]
    auth = make_auth(users_path, ttl_s=60, clock=lambda: now[0])
    cookie = auth.new_session("lan")
    assert cookie is not None
    now[0] += 59
    assert auth.session(cookie) is not None
    now[0] += 1
    assert auth.session(cookie) is None


def test_a_worker_with_the_same_secret_accepts_the_login_another_with_another_refuses(
    users_path: Path,
):
    cookie = make_auth(users_path).new_session("lan")
    assert cookie is not None
    other_worker = make_auth(users_path)
    assert other_worker.session(cookie) == User("lan", "operator", "session")
    assert other_worker.csrf_token(cookie) == make_auth(users_path).csrf_token(cookie)
    assert make_auth(users_path, secret=b"t" * 32).session(cookie) is None


def test_without_a_secret_each_auth_signs_with_its_own_and_warns(
    users_path: Path, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING):
        first = Auth(users_path, hasher=FAST)
        cookie = first.new_session("lan")
        assert cookie is not None and first.session(cookie) is not None
        assert Auth(users_path, hasher=FAST).session(cookie) is None
    assert sum("SESSION_SECRET is unset" in r.message for r in caplog.records) == 2


def test_role_changes_and_removals_in_the_file_take_effect_at_once(users_path: Path):
    auth = make_auth(users_path)
    cookie = auth.new_session("lan")
    assert cookie is not None
    assert auth.bearer("lan-token") == User("lan", "operator", "token")
    write_users(users_path, {"lan": "viewer", "minh": "viewer"}, {"lan": "lan-token"})
    assert auth.session(cookie) == User("lan", "viewer", "session")
    assert auth.bearer("lan-token") == User("lan", "viewer", "token")
    write_users(users_path, {"minh": "viewer"})
    assert auth.session(cookie) is None and auth.bearer("lan-token") is None


def test_an_unreadable_users_file_lets_nobody_in(users_path: Path):
    auth = make_auth(users_path)
    cookie = auth.new_session("lan")
    assert cookie is not None
    users_path.write_text("{not json")
    assert auth.session(cookie) is None and auth.bearer("lan-token") is None


def test_csrf_tokens_belong_to_their_session(users_path: Path):
    auth = make_auth(users_path)
    one, two = auth.new_session("lan"), auth.new_session("lan")
    assert one is not None and two is not None and one != two  # the nonce
    assert auth.csrf_ok(one, auth.csrf_token(one))
    assert not auth.csrf_ok(one, auth.csrf_token(two))
    assert not auth.csrf_ok(one, None) and not auth.csrf_ok(one, "é")
    # A CSRF token is no signature for any cookie.
    assert auth.session(f"{one}.{auth.csrf_token(one)}") is None


def test_an_unknown_token_names_nobody(users_path: Path):
    auth = make_auth(users_path)
    assert auth.bearer("wrong") is None and auth.bearer("") is None


async def test_an_unknown_user_costs_a_verification_too(
    users_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[str] = []

    def verify(hashed: str, password: str, hasher: PasswordHasher) -> bool:
        calls.append(hashed)
        return verify_password(hashed, password, hasher)

    monkeypatch.setattr(auth_module, "verify_password", verify)
    auth = make_auth(users_path)
    assert await auth.login("nobody", PASSWORD) is None
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")
    assert await auth.login("lan", PASSWORD) is not None


async def test_failed_logins_are_counted_and_logged_without_the_password(
    users_path: Path, caplog: pytest.LogCaptureFixture
):
    registry = CollectorRegistry()
    auth = make_auth(users_path, registry=registry)
    with caplog.at_level(logging.DEBUG):
        assert await auth.login("lan", "wrong-password-123") is None
        assert await auth.login("nobody", "wrong-password-456") is None
        assert await auth.login("lan", PASSWORD) is not None
    assert auth.failed_logins == 2
    assert registry.get_sample_value("ioc_console_login_failures_total") == 2
    logged = caplog.text
    assert "'lan'" in logged and "'nobody'" in logged
    assert "wrong-password" not in logged and PASSWORD not in logged


# --- the middleware and the routes --------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    user = request.get(USER)
    return web.json_response({"user": None if user is None else user.name})


async def _page(request: web.Request) -> web.Response:
    return web.Response(text="<p>board</p>", content_type="text/html")


def console_app(auth: Auth) -> web.Application:
    app = web.Application()
    install(app, auth)
    app.router.add_get("/", _page)
    app.router.add_get("/metrics", _echo)
    app.router.add_get("/health", _echo)
    app.router.add_get("/api/x", _echo)
    app.router.add_post("/api/x", _echo)
    return app


@asynccontextmanager
async def serving(auth: Auth) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(console_app(auth))) as client:
        yield client


async def log_in(client: TestClient[web.Request, web.Application], name: str) -> str:
    """Logs `name` in on `client`; the session's CSRF token."""
    response = await client.post(
        "/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    session = await (await client.get("/api/session")).json()
    assert session["user"] == name
    return str(session["csrf"])


async def test_without_credentials_the_api_says_401_and_pages_go_to_login(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        response = await client.get("/api/x")
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await response.json()) == {"error": "login or API token required"}
        response = await client.get("/", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/login")
        response = await client.get("/api/x", headers={"Authorization": "Bearer wrong"})
        assert response.status == 401
        client.session.cookie_jar.update_cookies({SESSION_COOKIE: "forged.cookie"})
        assert (await client.get("/api/x")).status == 401


async def test_metrics_health_login_and_static_are_open(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        for path in ("/metrics", "/health"):
            response = await client.get(path)
            assert response.status == 200 and (await response.json()) == {"user": None}
        response = await client.get("/login")
        assert response.status == 200
        assert '<link rel="stylesheet" href="/static/console.css">' in await response.text()
        assert (await client.get("/static/console.css")).status == 404  # open, just absent


async def test_a_dot_segment_under_static_is_not_open(users_path: Path):
    middleware = access_middleware(make_auth(users_path))
    response = await middleware(make_mocked_request("GET", "/static/console.css"), _echo)
    assert response.status == 200
    for path in ("/static/../board", "/static/%2e%2e/board", "/static/./console.css"):
        with pytest.raises(web.HTTPSeeOther):
            await middleware(make_mocked_request("GET", path), _echo)


async def test_the_session_cookie_is_httponly_and_same_site_strict(users_path: Path):
    async with serving(make_auth(users_path, ttl_s=3600)) as client:
        response = await client.post(
            "/login", data={"name": "lan", "password": PASSWORD}, allow_redirects=False
        )
        assert (response.status, response.headers["Location"]) == (303, "/")
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert (cookie["path"], cookie["max-age"]) == ("/", "3600")
        assert (await client.get("/")).status == 200


async def test_a_session_posts_only_with_its_csrf_token(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        csrf = await log_in(client, "lan")
        response = await client.post("/api/x")
        assert response.status == 403
        assert (await response.json()) == {"error": f"missing or wrong {CSRF_HEADER} header"}
        assert (await client.post("/api/x", headers={CSRF_HEADER: "x" + csrf})).status == 403
        response = await client.post("/api/x", headers={CSRF_HEADER: csrf})
        assert response.status == 200 and (await response.json()) == {"user": "lan"}


async def test_a_viewer_may_look_not_act(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        csrf = await log_in(client, "minh")
        assert (await client.get("/api/x")).status == 200
        response = await client.post("/api/x", headers={CSRF_HEADER: csrf})
        assert response.status == 403
        assert (await response.json()) == {"error": "this needs the operator role"}
        # … but may log out.
        response = await client.post("/logout", headers={CSRF_HEADER: csrf})
        assert response.status == 204
        assert response.cookies[SESSION_COOKIE].value == ""
        assert response.cookies[SESSION_COOKIE]["max-age"] == "0"


async def test_an_api_token_posts_without_a_csrf_token(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        bearer = {"Authorization": "Bearer lan-token"}
        response = await client.post("/api/x", headers=bearer)
        assert response.status == 200 and (await response.json()) == {"user": "lan"}
        session = await (await client.get("/api/session", headers=bearer)).json()
        assert session == {"user": "lan", "role": "operator", "csrf": None}


async def test_logout_needs_the_csrf_token(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        csrf = await log_in(client, "lan")
        assert (await client.post("/logout", allow_redirects=False)).status == 403
        assert (await client.post("/logout", headers={CSRF_HEADER: csrf})).status == 204
        assert (await client.get("/api/x")).status == 401  # the browser forgot the cookie


async def test_every_response_carries_the_security_headers(users_path: Path):
    assert SECURITY_HEADERS["Content-Security-Policy"] == CSP
    async with serving(make_auth(users_path)) as client:
        responses = [
            await client.get("/login"),
            await client.get("/metrics"),
            await client.get("/api/x"),
            await client.get("/", allow_redirects=False),
            await client.get("/static/none.js"),
        ]
        await log_in(client, "lan")
        responses += [await client.get("/"), await client.get("/api/session")]
        for response in responses:
            assert response.headers["Content-Security-Policy"] == CSP, response.url
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_a_failed_login_shows_the_form_again_with_the_name_escaped(users_path: Path):
    async with serving(make_auth(users_path)) as client:
        response = await client.post(
            "/login", data={"name": "<script>alert(1)</script>", "password": "nope-nope"}
        )
        assert response.status == 401
        page = await response.text()
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "Wrong name or password." in page and SESSION_COOKIE not in response.cookies
        response = await client.post("/login", data={"name": "lan"})
        assert response.status == 400


def test_from_settings_takes_the_file_secret_and_ttl(tmp_path: Path, users_path: Path):
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        console=ConsoleSettings(session_secret=SecretStr(SECRET.decode()), session_ttl_s=60),
    )
    auth = Auth.from_settings(settings)
    assert (auth.users_path, auth.ttl_s) == (users_path, 60)
    cookie = auth.new_session("lan")
    assert cookie is not None and make_auth(users_path).session(cookie) is not None
