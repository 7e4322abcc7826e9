from __future__ import annotations

import pytest

from models.errors import TransientError
from sinks.http import AiohttpPost
from sinks.redaction import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.example/services/T000/B000/XXXXSECRET",
            "https://hooks.example/services/***/***/***",
        ),
        ("https://x/api?token=abc&apikey=k3y&flag", "https://x/api?token=***&apikey=***&flag"),
        ("https://user:pass@host/", "https://***@host/"),
        ("https://user@host:8443/a/b#frag", "https://***@host:8443/a/***"),
        ("http://127.0.0.1:9093", "http://127.0.0.1:9093"),
        ("http://[::1]:9093/am/", "http://[::1]:9093/am/"),
        ("HTTPS://Hooks.Example/x", "https://hooks.example/x"),
        ("not a url", "***"),
        ("https://host:99999/x", "***"),  # an invalid port: nothing to trust in it
        ("", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_is_idempotent() -> None:
    once = redact_url("https://u:p@h/a/b?c=d")
    assert redact_url(once) == once


def test_redact_text_redacts_every_url_in_it() -> None:
    text = (
        "ClientResponseError: 403, message='Forbidden', "
        "url='https://hooks.example/services/T0/B0/SECRET?token=abc' (and http://u:p@b/c)"
    )
    assert redact_text(text) == (
        "ClientResponseError: 403, message='Forbidden', "
        "url='https://hooks.example/services/***/***/***?token=***' (and http://***@b/c)"
    )


def test_redact_text_hides_the_pieces_of_the_given_urls_echoed_without_them() -> None:
    url = "https://chat.example/hooks/ioc/XXXXSECRET%2F1?token=t0ken-value&precision=ms"
    text = "no hook XXXXSECRET/1 for token t0ken-value at precision ms"
    # Short pieces (`ms`) stay: no token is that short, and the text stays readable.
    assert redact_text(text, url) == "no hook *** for token *** at precision ms"
    assert redact_text("HTTP 400: bad", url) == "HTTP 400: bad"


def test_any_scheme_in_a_text_is_a_url() -> None:
    assert redact_text("NonHttpUrlClientError: ftp://u:pw@x/a/b") == (
        "NonHttpUrlClientError: ftp://***@x/a/***"
    )


async def test_aiohttp_errors_name_the_url_redacted_and_unchained() -> None:
    post = AiohttpPost(timeout_s=1.0)
    await post.open()
    try:
        # Refused by aiohttp before any connection: an invalid port.
        with pytest.raises(TransientError) as raised:
            await post("http://hooks.example:99999/services/T000/SECRETTOKEN?token=abcdef", b"", {})
    finally:
        await post.close()
    message = str(raised.value)
    assert message.startswith("InvalidUrlClientError")
    assert "SECRETTOKEN" not in message and "abcdef" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
