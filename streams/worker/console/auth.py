"""Who may use the console (docs/CONSOLE.md, "Access" and "HTTP API").

A login is a signed cookie, not a server-side session, so any worker holding the same
`IOC_CONSOLE__SESSION_SECRET` accepts a login made on another:

    ioc_session = base64url({"user", "role", "exp", "nonce"}) "." base64url(HMAC-SHA256)

The users file stays the authority: each request looks the user up again (the file is
re-read when it changes), so removing a user or changing a role acts at once. The CSRF
token is an HMAC of the cookie, the same on every worker, and nothing is stored.

`install(web_app, auth)` puts the middleware and the routes /login, /logout and
/api/session on the worker's aiohttp application; the handlers behind it find the
caller in `request[USER]`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, ValidationError

from streams.worker.console.users import (
    Role,
    UserRecord,
    UsersFileError,
    hash_password,
    load_users,
    token_matches,
    verify_password,
)
from streams.worker.settings import Settings

__all__ = [
    "CSRF_HEADER",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "USER",
    "Auth",
    "User",
    "access_middleware",
    "install",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "ioc_session"
CSRF_HEADER = "X-CSRF-Token"
#: On every response, as docs/CONSOLE.md writes them.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_OPEN_PATHS = frozenset({"/metrics", "/health", "/login"})
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Domain separation: a CSRF token (an HMAC of a cookie) must never pass as a signature.
_SESSION_CONTEXT = b"ioc-session\0"
_CSRF_CONTEXT = b"ioc-csrf\0"
_MAX_COOKIE = 1024
_MAX_NAME = 64
# argon2 cost grows with the input; nobody types a longer password.
_MAX_PASSWORD = 1024
# Each verification takes 64 MiB and a core for tens of ms; a login flood must not
# take the processor's CPU or memory.
_CONCURRENT_VERIFICATIONS = 2


@dataclass(frozen=True)
class User:
    """The caller of a request: `via` is how it proved who it is."""

    name: str
    role: Role
    via: Literal["session", "token"]


USER = web.RequestKey("ioc_console_user", User)


class _SessionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    role: Role
    exp: int
    nonce: str


class Auth:
    """Checks passwords, API tokens, session cookies and CSRF tokens against the users
    file at `users_path`. Without a `secret` each instance signs with its own."""

    def __init__(
        self,
        users_path: Path,
        *,
        secret: bytes | None = None,
        ttl_s: float = 12 * 3600,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        if secret is None:
            log.warning(
                "IOC_CONSOLE__SESSION_SECRET is unset: this worker signs console logins "
                "with its own random secret; a login holds on this worker only, until "
                "it restarts"
            )
            secret = secrets.token_bytes(32)
        elif len(secret) < 32:
            log.warning("IOC_CONSOLE__SESSION_SECRET is short; use 32 characters or more")
        self.users_path = users_path
        self.ttl_s = ttl_s
        self.failed_logins = 0
        self._secret = secret
        self._clock = clock
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._dummy_hash: str | None = None
        self._verifications = asyncio.Semaphore(_CONCURRENT_VERIFICATIONS)
        self._records: dict[str, UserRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._failures = (
            None
            if registry is None
            else Counter(
                "ioc_console_login_failures",
                "Console logins refused (unknown user or wrong password).",
                registry=registry,
            )
        )

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry | None = None) -> Auth:
        console = settings.console
        # An empty value counts as unset: HMAC with an empty key protects nothing.
        secret = console.session_secret.get_secret_value() if console.session_secret else ""
        return cls(
            console.users_path(settings.data_dir),
            secret=secret.encode() or None,
            ttl_s=console.session_ttl_s,
            registry=registry,
        )

    # --- the users file -----------------------------------------------------------

    def record(self, name: str) -> UserRecord | None:
        """The user `name` as the users file says now."""
        return self._users().get(name)

    def _users(self) -> dict[str, UserRecord]:
        # One stat per request; the file is parsed again only when it was replaced or
        # changed (`ioc users` replaces it, so the inode changes too).
        try:
            st = os.stat(self.users_path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._records = load_users(self.users_path).users
            except (UsersFileError, OSError) as exc:
                # Fail closed: a file that cannot be read lets nobody in.
                log.error("console users file unusable, nobody can log in: %s", exc)
                self._records = {}
        return self._records

    # --- passwords and tokens -----------------------------------------------------

    async def login(self, name: str, password: str, peer: str | None = None) -> str | None:
        """A new session cookie value if `password` is right, else None (counted and
        logged, without the password)."""
        name, password = name[:_MAX_NAME], password[:_MAX_PASSWORD]
        record = self.record(name)
        async with self._verifications:
            # Off the event loop: the loop also runs the stream processor.
            ok = await asyncio.get_running_loop().run_in_executor(
                None, self._verify, record, password
            )
        cookie = self.new_session(name) if ok else None
        if cookie is None:
            self.failed_logins += 1
            if self._failures is not None:
                self._failures.inc()
            log.warning("console login refused for %r from %s", name, peer)
        else:
            log.info("console login: %r from %s", name, peer)
        return cookie

    def _verify(self, record: UserRecord | None, password: str) -> bool:
        # An unknown user costs the same time, checked against a dummy hash made with
        # the current parameters, so the answer's delay reveals no user name.
        if record is None:
            if self._dummy_hash is None:
                self._dummy_hash = hash_password(secrets.token_urlsafe(16), self._hasher)
            verify_password(self._dummy_hash, password, self._hasher)
            return False
        return verify_password(record.password, password, self._hasher)

    def bearer(self, token: str) -> User | None:
        """The user holding API token `token`. Every user's digests are compared, in
        constant time, whichever matches."""
        found: User | None = None
        for name, record in self._users().items():
            if token_matches(token, record.tokens) and found is None:
                found = User(name, record.role, "token")
        return found

    # --- sessions and CSRF --------------------------------------------------------

    def new_session(self, name: str) -> str | None:
        """A signed cookie value for the user `name`, valid `ttl_s`; None if the users
        file does not know `name`."""
        record = self.record(name)
        if record is None:
            return None
        payload = _SessionPayload(
            user=name,
            role=record.role,
            exp=int(self._clock() + self.ttl_s),
            nonce=secrets.token_urlsafe(12),
        )
        body = _b64encode(payload.model_dump_json().encode())
        return f"{body}.{self._mac(_SESSION_CONTEXT, body)}"

    def session(self, cookie: str) -> User | None:
        """The user of session cookie `cookie` if its signature holds, it has not
        expired and the user still exists (with the role the file gives now)."""
        body, dot, signature = cookie.rpartition(".")
        if not dot or len(cookie) > _MAX_COOKIE or not cookie.isascii():
            return None
        if not hmac.compare_digest(signature, self._mac(_SESSION_CONTEXT, body)):
            return None
        try:
            payload = _SessionPayload.model_validate_json(_b64decode(body))
        except (binascii.Error, ValidationError):
            return None
        if payload.exp <= self._clock():
            return None
        record = self.record(payload.user)
        return None if record is None else User(payload.user, record.role, "session")

    def csrf_token(self, cookie: str) -> str:
        return self._mac(_CSRF_CONTEXT, cookie)

    def csrf_ok(self, cookie: str, header: str | None) -> bool:
        if header is None or not header.isascii():
            return False
        return hmac.compare_digest(header, self.csrf_token(cookie))

    def _mac(self, context: bytes, text: str) -> str:
        digest = hmac.new(self._secret, context + text.encode(), hashlib.sha256).digest()
        return _b64encode(digest)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- HTTP ---------------------------------------------------------------------------


def _is_open(path: str) -> bool:
    if path in _OPEN_PATHS:
        return True
    # A dot segment could reach another route through a catch-all; only plain files.
    return path.startswith("/static/") and not {".", ".."} & set(path.split("/"))


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def access_middleware(auth: Auth) -> Middleware:
    """Lets the open paths through; otherwise finds the caller (API token first, then
    session cookie), puts it in `request[USER]` and enforces role and CSRF token on
    state-changing requests."""

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_open(request.path):
            return await handler(request)
        authorization = request.headers.get("Authorization")
        cookie = request.cookies.get(SESSION_COOKIE)
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            user = auth.bearer(token.strip()) if scheme.lower() == "bearer" else None
            cookie = None  # proven by the token: no CSRF token needed
        else:
            user = auth.session(cookie) if cookie is not None else None
        if user is None:
            if request.path.startswith("/api/") or authorization is not None:
                return _error(401, "login or API token required", **{"WWW-Authenticate": "Bearer"})
            raise web.HTTPSeeOther("/login")
        if request.method in _STATE_CHANGING:
            # Anyone may end their own session; everything else changes the board.
            if user.role != "operator" and request.path != "/logout":
                return _error(403, "this needs the operator role")
            if cookie is not None and not auth.csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
                return _error(403, f"missing or wrong {CSRF_HEADER} header")
        request[USER] = user
        return await handler(request)

    return access


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # At prepare time rather than in the middleware, so that streamed responses (the
    # SSE stream prepares its own), static files and error pages carry them too.
    response.headers.update(SECURITY_HEADERS)


_LOGIN_PAGE = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IOC — Đăng nhập / Log in</title>
<link rel="stylesheet" href="/static/console.css">
</head>
<body class="login">
<main>
<h1>Trung tâm điều hành — Đăng nhập / Log in</h1>
{message}<form method="post" action="/login">
<label>Tên / Name <input name="name" value="{name}" autocomplete="username" required autofocus></label>
<label>Mật khẩu / Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Đăng nhập / Log in</button>
</form>
</main>
</body>
</html>
"""  # noqa: E501


def _login_page(status: int = 200, name: str = "", message: str = "") -> web.Response:
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>\n' if message else ""
    body = _LOGIN_PAGE.format(message=shown, name=html.escape(name))
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


class _Handlers:
    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    async def login_page(self, request: web.Request) -> web.Response:
        return _login_page()

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = form.get("name"), form.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            return _login_page(400, message="Nhập tên và mật khẩu. / Name and password needed.")
        cookie = await self.auth.login(name, password, peer=request.remote)
        if cookie is None:
            return _login_page(
                401, name[:_MAX_NAME], "Sai tên hoặc mật khẩu. / Wrong name or password."
            )
        response = web.Response(status=303, headers={"Location": "/"})
        # Not Secure: the console may be served over plain HTTP on a loopback or LAN
        # address, where a Secure cookie would never come back. Behind TLS, a proxy
        # can add the flag.
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int(self.auth.ttl_s),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        # The cookie is signed, not stored: clearing it ends the session in this
        # browser (a copy stays valid until it expires or the user is removed).
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    async def session(self, request: web.Request) -> web.Response:
        user = request[USER]
        cookie = request.cookies.get(SESSION_COOKIE)
        csrf = self.auth.csrf_token(cookie) if user.via == "session" and cookie else None
        return web.json_response(
            {"user": user.name, "role": user.role, "csrf": csrf},
            headers={"Cache-Control": "no-store"},
        )


def install(web_app: web.Application, auth: Auth) -> None:
    """Put access control, the security headers and the login routes on `web_app`
    (Faust's `app.web.web_app`), before its server starts."""
    web_app.middlewares.append(access_middleware(auth))
    web_app.on_response_prepare.append(_security_headers)
    handlers = _Handlers(auth)
    web_app.router.add_get("/login", handlers.login_page)
    web_app.router.add_post("/login", handlers.login)
    web_app.router.add_post("/logout", handlers.logout)
    web_app.router.add_get("/api/session", handlers.session)
