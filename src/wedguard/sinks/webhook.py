"""Signed JSON webhooks, in the Standard Webhooks style.

Each POST carries the event as a compact JSON body and three headers:

* ``webhook-id``: unique per message, the same on every retry (dedupe on it);
* ``webhook-timestamp``: Unix seconds when the attempt was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one
  per secret, space-separated, so a receiver can rotate its secret without a gap.

A secret written ``whsec_<base64>`` (as Standard Webhooks tools generate them) is
base64-decoded; any other string is used as UTF-8 bytes. Receivers check requests
with :func:`verify_signature`.

>>> body = b'{"kind":"alert"}'
>>> headers = sign_headers(body, ["s3cret"], msg_id="msg_1", timestamp=1_700_000_000)
>>> verify_signature(body, headers, "s3cret", now=1_700_000_100)
True
>>> verify_signature(body + b" ", headers, "s3cret", now=1_700_000_100)
False
>>> verify_signature(body, headers, "s3cret", now=1_700_000_400)   # replayed too late
False
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from wedguard import _checks
from wedguard.clock import Clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks._common import NetworkSink, Secret, check_url, dumps, post, resolve_secret
from wedguard.sinks._common import url_hint as _url_hint
from wedguard.units import parse_duration

__all__ = ["WebhookSink", "sign_headers", "signing_keys", "verify_signature"]

_USER_AGENT = "wedguard-webhook/1"


_MAX_STAMP_DIGITS = 15  # Unix seconds need 11 digits until the year 5138
_MAX_SIGNATURES = 64  # a header with more candidates is refused (bounded work per request)
_STAMP = re.compile(rf"[0-9]{{1,{_MAX_STAMP_DIGITS}}}", re.ASCII)

SecretLike: TypeAlias = "str | bytes | Secret"
"""One signing secret: text (``whsec_<base64>`` is decoded), raw key bytes, or a Secret."""


def _key(secret: str | bytes | bytearray | Secret) -> bytes:
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    text: object = secret.reveal() if isinstance(secret, Secret) else secret
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        return b""  # refused by signing_keys as no usable key
    if text.startswith("whsec_"):
        try:
            return base64.b64decode(text[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return text.encode("utf-8", "surrogatepass")


def signing_keys(
    secret: SecretLike | Sequence[SecretLike] | None, field: str = "secret"
) -> list[bytes]:
    """The HMAC keys of one secret or several; :class:`~wedguard.errors.ConfigError` for
    none, an empty one (an empty key lets anyone forge a signature) or a wrong type.

    The error never shows a secret's value.

    >>> len(signing_keys(["whsec_c2VjcmV0", b"raw key bytes"]))
    2
    >>> signing_keys("whsec_")
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: secret: '***' is not valid; expected a non-empty signing secret (str, bytes or Secret; whsec_ must be followed by base64 of at least one byte)
    """
    items: list[object]
    if isinstance(secret, (str, bytes, bytearray, Secret)):
        items = [secret]
    elif isinstance(secret, (list, tuple)):
        items = list(secret)
        if not items:
            raise ConfigError(field, "[]", "at least one signing secret")
    else:
        shown = None if secret is None else type(secret).__name__
        raise ConfigError(field, shown, "a signing secret (str, bytes or Secret) or a list of them")
    keys = []
    for item in items:
        if not isinstance(item, (str, bytes, bytearray, Secret)):
            raise ConfigError(
                field,
                type(item).__name__,
                "a signing secret (str, bytes or Secret) or a list of them",
            )
        key = _key(item)
        if not key:
            raise ConfigError(
                field,
                "***",
                "a non-empty signing secret (str, bytes or Secret; whsec_ must be followed"
                " by base64 of at least one byte)",
            )
        keys.append(key)
    return keys


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = (
        msg_id.encode("utf-8", "surrogatepass")
        + b"."
        + str(timestamp).encode("ascii")
        + b"."
        + body
    )
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign_headers(
    body: bytes, secrets: Iterable[SecretLike], *, msg_id: str, timestamp: int
) -> dict[str, str]:
    """The ``webhook-*`` headers for ``body`` signed with every secret.

    Raises:
        ConfigError: no secret, or an empty one.
    """
    keys = signing_keys(list(secrets), "secrets")
    signatures = " ".join(f"v1,{_signature(k, msg_id, timestamp, body)}" for k in keys)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def _tolerance(value: object) -> float:
    if isinstance(value, str):
        seconds = parse_duration(value, field="tolerance")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("tolerance", value, "a finite number of seconds >= 0, or '5m'")
    else:
        seconds = float(value)
    if not 0 <= seconds < math.inf:
        raise ConfigError("tolerance", value, "a finite number of seconds >= 0, or '5m'")
    return seconds


def _now(value: object) -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError("now", value, "an aware datetime or Unix seconds")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("now", value, "an aware datetime or Unix seconds")
    current = float(value)
    if not math.isfinite(current):
        raise ConfigError("now", value, "a finite number of Unix seconds")
    return current


def _text(value: object) -> str:
    """A header name or value as text: bytes are Latin-1, as HTTP defines them."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return value if isinstance(value, str) else str(value)


def _header_items(headers: object) -> list[tuple[object, object]]:
    items = getattr(headers, "items", None)
    pairs: Any = items() if callable(items) else headers
    return [(k, v) for k, v in pairs]


def _check(body: bytes, headers: object, keys: list[bytes], tolerance: float, now: float) -> bool:
    lower: dict[str, str] = {}
    for k, v in _header_items(headers):
        lower[_text(k).strip().lower()] = _text(v)
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp", "").strip()
    signature_header = lower.get("webhook-signature")
    if not msg_id or not signature_header or _STAMP.fullmatch(stamp) is None:
        return False
    timestamp = int(stamp)
    if not abs(now - timestamp) <= tolerance:
        return False
    given = [
        part.split(",", 1)[1].encode("ascii", "replace")
        for part in signature_header.split()
        if part.startswith("v1,")
    ]
    if not given or len(given) > _MAX_SIGNATURES:
        return False
    ok = False
    for key in keys:
        expected = _signature(key, msg_id, timestamp, body).encode("ascii")
        for candidate in given:
            # no early exit: every comparison runs, each in constant time
            ok |= hmac.compare_digest(expected, candidate)
    return ok


def verify_signature(
    body: bytes | str,
    headers: Mapping[str, str] | Any,
    secret: SecretLike | Sequence[SecretLike] | None = None,
    *,
    tolerance: float | str = 300,
    now: float | datetime | None = None,
    secret_or_secrets: SecretLike | Sequence[SecretLike] | None = None,
) -> bool:
    """True when ``headers`` carry a valid signature of exactly ``body``.

    Args:
        body: the raw request body, as received (bytes; str is UTF-8 encoded).
        headers: the request headers: any mapping, or a list of ``(name, value)``
            pairs; names are matched case-insensitively, bytes are read as Latin-1.
        secret: one secret or several (during a rotation any may match). A str
            (``whsec_<base64>`` is base64-decoded, any other text is used as UTF-8),
            raw key bytes, or a :class:`~wedguard.sinks.Secret`.
        secret_or_secrets: the same, by its older keyword name.
        tolerance: the replay window, in seconds or as a duration such as ``"5m"``: a
            timestamp further than this from ``now``, in the past or the future, is
            refused (default 5 minutes).
        now: Unix seconds or an aware datetime (default: the system clock).

    Returns False, and never raises, for anything in ``headers`` or ``body``: missing,
    malformed, huge or non-ASCII headers, a mapping that fails while it is read. Every
    signature is compared in constant time.

    Raises:
        ConfigError: the *arguments* are wrong, which is a programming error, not a
            forged request: no secret or an empty one (an empty key would let anyone
            sign), a tolerance that is negative, infinite, NaN or not a number, a
            ``now`` that is NaN, infinite or a naive datetime, a body that is neither
            bytes nor str. The message never shows a secret.

    Example::

        >>> from wedguard.sinks.webhook import sign_headers
        >>> import time
        >>> body = b'{"kind": "alert"}'
        >>> headers = sign_headers(body, ["whsec_c2VjcmV0"], msg_id="msg_1",
        ...                        timestamp=int(time.time()))
        >>> verify_signature(body, headers, "whsec_c2VjcmV0")
        True
        >>> verify_signature(body, headers, b"secret", tolerance="5m")   # the same key
        True
        >>> verify_signature(body + b" ", headers, secret="whsec_c2VjcmV0")
        False
        >>> verify_signature(body, {"webhook-timestamp": "9" * 400}, "whsec_c2VjcmV0")
        False

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Never raises for header content; bytes secrets and duration tolerances are
       accepted; empty secrets and bad tolerances are a ConfigError.
    """
    if secret is None:
        secret = secret_or_secrets
    elif secret_or_secrets is not None:
        raise ConfigError("secret_or_secrets", "***", "only one of secret, secret_or_secrets")
    keys = signing_keys(secret)
    window = _tolerance(tolerance)
    current = _now(now)
    raw: object = body
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
    else:
        raise ConfigError("body", type(raw).__name__, "the raw request body (bytes or str)")
    try:
        return _check(data, headers, keys, window, current)
    except Exception:  # whatever a request holds, the answer is "not verified"
        return False


class WebhookSink(NetworkSink):
    """POST each event as signed JSON (see the module text for the headers).

    Args:
        url: the endpoint (treated as a secret: it may hold a token).
        url_env: or the environment variable holding it.
        secret: a signing secret, or a list of them (rotation: all sign each body).
            Without a secret nothing is signed. An empty secret (``""``,
            ``Secret("")``, ``"whsec_"``) is a ConfigError: it would let anyone sign.
        secret_env: or the environment variable holding one secret.
        headers: extra request headers (not secret: they may be logged).
        timeout: seconds for each attempt (connect and read).
        name: how logs and the dispatcher's spool call this sink.
        queue_size: how many events ``emit`` may queue.
        max_attempts: give an emitted event up after this many tries (None: never).
        backoff: the first retry delay in seconds (doubles, with jitter).
        backoff_max: the longest retry delay.
        clock: timestamps come from it.

    ``emit`` queues; ``send`` posts at once and raises
    :class:`~wedguard.runtime.alerts.DeliveryError` (behind an
    :class:`~wedguard.AlertDispatcher`, which calls ``send``).

    >>> sink = WebhookSink("https://example.org/hooks/T0KEN", secret="s3cret")
    >>> "T0KEN" in repr(sink) or "s3cret" in repr(sink)
    False

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str | Secret | None = None,
        *,
        url_env: str | None = None,
        secret: str | Secret | Sequence[str | Secret] | None = None,
        secret_env: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        name: str = "webhook",
        queue_size: int = 1000,
        max_attempts: int | None = None,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        found = resolve_secret(url, url_env, field="url", env_field="url_env")
        if found is None:
            raise ConfigError("url", None, "a URL, or url_env naming a variable that holds one")
        check_url(found, "url")
        self._url = found
        secrets: list[Secret] = []
        if isinstance(secret, (list, tuple)):
            if secret_env is not None:
                raise ConfigError("secret", "***", "either secret or secret_env, not both")
            for s in secret:
                one = resolve_secret(s, None, field="secret", env_field="secret_env")
                if one is not None:
                    secrets.append(one)
            if not secrets:
                raise ConfigError("secret", "[]", "at least one secret")
        else:
            one = resolve_secret(secret, secret_env, field="secret", env_field="secret_env")  # type: ignore[arg-type]
            if one is not None:
                secrets.append(one)
        if secrets:
            signing_keys(secrets)  # an empty key (Secret(""), "whsec_") signs for anyone
        self._signing = secrets
        given = _checks.mapping(headers or {}, "headers", "a mapping of header names to values")
        self._headers = {str(k): str(v) for k, v in given.items()}
        super().__init__(
            name=name,
            timeout=timeout,
            queue_size=queue_size,
            max_attempts=max_attempts,
            backoff=backoff,
            backoff_max=backoff_max,
            clock=clock,
        )

    def _secrets(self) -> Iterable[str]:
        yield self._url.reveal()
        for s in self._signing:
            yield s.reveal()

    def body(self, event: Event) -> bytes:
        """The exact bytes that are posted (and signed) for ``event``."""
        return dumps(event)

    def _send(self, event: Event, msg_id: str) -> None:
        body = self.body(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            **self._headers,
        }
        timestamp = int(self._clock.now().timestamp())
        if self._signing:
            headers.update(sign_headers(body, self._signing, msg_id=msg_id, timestamp=timestamp))
        else:
            headers.update({"webhook-id": msg_id, "webhook-timestamp": str(timestamp)})
        post(self._url, body, headers, timeout=self.timeout, clock=self._clock)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, url={_url_hint(self._url.reveal())!r}, "
            f"secrets={len(self._signing)}, timeout={self.timeout:g})"
        )
