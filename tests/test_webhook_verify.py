"""verify_signature answers True or False for any request and never raises for what a
request holds; wrong arguments (an empty secret, a NaN tolerance) are a ConfigError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedguard.errors import ConfigError
from wedguard.sinks import Secret, WebhookSink, verify_signature
from wedguard.sinks.webhook import sign_headers

NOW = 1_700_000_000
BODY = b'{"kind":"alert","summary":"backup halted"}'
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64 of b"secret-key-for-tests"


def signed(body: bytes = BODY, secrets: Any = (SECRET,), ts: int = NOW) -> dict[str, str]:
    return sign_headers(body, list(secrets), msg_id="msg_1", timestamp=ts)


header_names = st.one_of(
    st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Timestamp"]),
    st.text(max_size=20),
    st.binary(max_size=20),
)
header_values = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.from_regex(r"[0-9]{12,500}", fullmatch=True),  # huge numbers
    st.just("١٧٠٠٠٠٠٠٠٠"),  # Arabic-Indic digits: int() reads them, a timestamp they are not
    st.just("v1," + "A" * 10_000),
)


@given(headers=st.dictionaries(header_names, header_values, max_size=6))
def test_any_headers_give_false_never_an_exception(headers: dict[Any, Any]) -> None:
    assert verify_signature(BODY, headers, SECRET, now=NOW) is False


@given(
    name=st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]),
    value=header_values,
)
def test_one_tampered_header_gives_a_bool(name: str, value: Any) -> None:
    headers: dict[str, Any] = {**signed(), name: value}
    result = verify_signature(BODY, headers, SECRET, now=NOW)
    assert result is (value == signed()[name])


@given(
    body=st.binary(max_size=200),
    msg_id=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() == s and s.strip()),
    key=st.binary(min_size=1, max_size=64),
    ts=st.integers(0, 10**11),
    flip=st.integers(0, 199),
)
def test_a_signature_round_trips_and_any_changed_byte_fails(
    body: bytes, msg_id: str, key: bytes, ts: int, flip: int
) -> None:
    headers = sign_headers(body, [key], msg_id=msg_id, timestamp=ts)
    assert verify_signature(body, headers, key, now=ts) is True
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        assert verify_signature(changed, headers, key, now=ts) is False


def test_a_400_digit_timestamp_is_refused_not_an_overflow() -> None:
    headers = {**signed(), "webhook-timestamp": "9" * 400}
    assert verify_signature(BODY, headers, SECRET, now=NOW) is False
    assert verify_signature(BODY, headers, SECRET) is False
    assert verify_signature(BODY, {**signed(), "webhook-timestamp": "1" * 16}, SECRET) is False


def test_headers_that_fail_while_read_give_false() -> None:
    class Broken:
        def items(self) -> Iterator[tuple[str, str]]:
            raise RuntimeError("connection reset")

    assert verify_signature(BODY, Broken(), SECRET, now=NOW) is False
    assert verify_signature(BODY, None, SECRET, now=NOW) is False
    assert verify_signature(BODY, 42, SECRET, now=NOW) is False


def test_headers_as_pairs_and_as_bytes_are_read() -> None:
    pairs = list(signed().items())
    assert verify_signature(BODY, pairs, SECRET, now=NOW) is True
    raw = [(k.encode(), v.encode()) for k, v in pairs]
    assert verify_signature(BODY, raw, SECRET, now=NOW) is True
    assert verify_signature(bytearray(BODY), dict(pairs), SECRET, now=NOW) is True


def test_a_bytes_secret_is_the_raw_key() -> None:
    assert verify_signature(BODY, signed(), b"secret-key-for-tests", now=NOW) is True
    assert verify_signature(BODY, signed(secrets=[b"k" * 32]), b"k" * 32, now=NOW) is True
    assert verify_signature(BODY, signed(), Secret(SECRET), now=NOW) is True


def test_rotation_any_of_several_secrets_may_match() -> None:
    headers = signed(secrets=["old-secret", "new-secret"])
    assert verify_signature(BODY, headers, ["other", "new-secret"], now=NOW) is True
    assert verify_signature(BODY, headers, ["old-secret"], now=NOW) is True
    assert verify_signature(BODY, headers, ["other", b"another"], now=NOW) is False


@pytest.mark.parametrize("secret", ["", Secret(""), "whsec_", b"", [], [""], ["ok", ""], None, 42])
def test_an_empty_or_missing_secret_is_a_config_error(secret: Any) -> None:
    """An empty key would accept a forgery signed with an empty key."""
    forged = sign_headers(BODY, [b"x"], msg_id="m", timestamp=NOW)
    mac = hmac.new(b"", b"m." + str(NOW).encode() + b"." + BODY, hashlib.sha256).digest()
    forged["webhook-signature"] = "v1," + base64.b64encode(mac).decode()
    with pytest.raises(ConfigError, match="secret"):
        verify_signature(BODY, forged, secret, now=NOW)


@pytest.mark.parametrize("tolerance", [math.nan, math.inf, -1, -0.5, "soon", True, None, [300]])
def test_a_bad_tolerance_is_a_config_error_never_acceptance(tolerance: Any) -> None:
    ten_years_old = signed(ts=NOW - 10 * 365 * 86400)
    with pytest.raises(ConfigError, match="tolerance"):
        verify_signature(BODY, ten_years_old, SECRET, now=NOW, tolerance=tolerance)


@pytest.mark.parametrize(
    "now", [math.nan, math.inf, -math.inf, datetime(2023, 11, 14), "now", True]
)
def test_a_bad_now_is_a_config_error_never_acceptance(now: Any) -> None:
    ten_years_old = signed(ts=NOW - 10 * 365 * 86400)
    with pytest.raises(ConfigError, match="now"):
        verify_signature(BODY, ten_years_old, SECRET, now=now)


def test_tolerance_as_a_duration_and_now_as_an_aware_datetime() -> None:
    headers = signed()
    assert verify_signature(BODY, headers, SECRET, now=NOW + 299, tolerance="300") is True
    assert verify_signature(BODY, headers, SECRET, now=NOW + 301, tolerance="5m") is False
    assert verify_signature(BODY, headers, SECRET, now=NOW, tolerance=0) is True
    aware = datetime.fromtimestamp(NOW + 10, timezone.utc)
    assert verify_signature(BODY, headers, SECRET, now=aware) is True


def test_a_body_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="body"):
        verify_signature({"kind": "alert"}, signed(), SECRET, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret", ["", Secret(""), "whsec_", [Secret("ok"), Secret("")], [], b"raw-bytes"]
)
def test_webhook_sink_refuses_an_empty_secret_at_construction(secret: Any) -> None:
    with pytest.raises(ConfigError, match="secret") as caught:
        WebhookSink("https://example.org/in", secret=secret)
    assert "raw-bytes" not in str(caught.value)


def test_config_errors_never_show_the_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        verify_signature(BODY, signed(), ["s3cret-value", ""], now=NOW)
    assert "s3cret-value" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        verify_signature(BODY, signed(), "x", secret_or_secrets="s3cret-value")
    assert "s3cret-value" not in str(caught.value)
