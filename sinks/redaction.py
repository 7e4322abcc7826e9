"""Secrets out of the URLs an operator sees: `/sinks`, logs, dead-letter reasons.

Webhook receivers carry their token in the URL (`https://hooks.example/services/
T000/B000/XXXX`, `…?token=abc`, `https://user:pass@host/`), so a URL is never shown
as configured. The one rule, `redact_url`:

    kept      scheme, host, port, the first path segment, query parameter names
    ***       the userinfo, every further path segment, every query value
    dropped   the fragment

    https://user:pass@hooks.example:8443/services/T000/B000/XXXX?token=abc&x=1#f
    → https://***@hooks.example:8443/services/***/***/***?token=***&x=***

`redact_text` applies it to every URL (`scheme://…`) inside a free text (an exception
message, a server's answer), and, given the URLs the text is about, also hides their
secret pieces where they appear without the URL around them (a server that echoes
the path of the request). Pieces shorter than `MIN_SECRET_CHARS` are left: no token
is that short, and hiding `v2` or `1` would mangle the rest of the text.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "MIN_SECRET_CHARS", "redact_text", "redact_url"]

MASK: Final = "***"
#: Secret pieces shorter than this are not searched for in free text.
MIN_SECRET_CHARS: Final = 6

# Any scheme (aiohttp names an `ftp://user:pass@…` it refuses), up to whitespace, a
# quote or a bracket: how URLs end inside messages.
_URL = re.compile(r"""\b[a-z][a-z0-9+.-]*://[^\s'"<>()\[\]{}]+""", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL by the rule above; a text that does not parse as a URL with a host
    becomes `***` whole (it may be nothing but a secret)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # an invalid port or IPv6 literal
        return MASK
    if not parts.scheme or not host:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    segments = parts.path.split("/")  # "/a/b" → ["", "a", "b"]
    path = "/".join(segments[:2] + [MASK if s else s for s in segments[2:]])
    query = "&".join(
        f"{name}={MASK}" if sep else name
        for name, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _secrets(url: str) -> set[str]:
    """What `redact_url` hides of `url`, as written and unquoted."""
    try:
        parts = urlsplit(url.strip())
        pieces = [parts.username or "", parts.password or ""]
    except ValueError:
        return {url} if len(url) >= MIN_SECRET_CHARS else set()
    pieces += parts.path.split("/")[2:]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    pieces += [pair.partition("=")[2] for pair in parts.query.split("&")]
    found = {piece for piece in pieces if len(piece) >= MIN_SECRET_CHARS}
    return found | {unquote(piece) for piece in found}


def redact_text(text: str, *urls: str) -> str:
    """`text` with every URL in it redacted, and the secret pieces of `urls`
    hidden wherever else they appear."""
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    # Longest first, so that a piece containing another is hidden whole.
    for piece in sorted(set().union(*map(_secrets, urls)), key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text
