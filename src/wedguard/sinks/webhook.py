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
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from wedguard import _checks
from wedguard.clock import Clock
from wedguard.errors import ConfigError
from wedguard.protocols import Event
from wedguard.sinks._common import NetworkSink, Secret, check_url, dumps, post, resolve_secret
from wedguard.sinks._common import url_hint as _url_hint

__all__ = ["WebhookSink", "sign_headers", "verify_signature"]

_USER_AGENT = "wedguard-webhook/1"


def _key(secret: str | Secret) -> bytes:
    text = secret.reveal() if isinstance(secret, Secret) else secret
    if text.startswith("whsec_"):
        try:
            return base64.b64decode(text[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return text.encode("utf-8")


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = msg_id.encode("utf-8") + b"." + str(timestamp).encode("ascii") + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign_headers(
    body: bytes, secrets: Iterable[str | Secret], *, msg_id: str, timestamp: int
) -> dict[str, str]:
    """The ``webhook-*`` headers for ``body`` signed with every secret."""
    signatures = " ".join(f"v1,{_signature(_key(s), msg_id, timestamp, body)}" for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def verify_signature(
    body: bytes | str,
    headers: Mapping[str, str] | Any,
    secret: str | Secret | Sequence[str | Secret] | None = None,
    *,
    tolerance: float = 300,
    now: float | datetime | None = None,
    secret_or_secrets: str | Secret | Sequence[str | Secret] | None = None,
) -> bool:
    """True when ``headers`` carry a valid signature of exactly ``body``.

    Args:
        body: the raw request body, as received (bytes; str is UTF-8 encoded).
        headers: the request headers (any mapping; names are matched case-insensitively).
        secret: one secret or several (during a rotation any may match).
        secret_or_secrets: the same, by its older keyword name.
        tolerance: the replay window in seconds: a timestamp further than this from
            ``now``, in the past or the future, is refused (default 5 minutes).
        now: Unix seconds or an aware datetime (default: the system clock).

    Every signature is compared in constant time. Missing or malformed headers give
    False, never an exception.

    Example::

        >>> from wedguard.sinks.webhook import sign_headers
        >>> import time
        >>> body = b'{"kind": "alert"}'
        >>> headers = sign_headers(body, ["whsec_c2VjcmV0"], msg_id="msg_1",
        ...                        timestamp=int(time.time()))
        >>> verify_signature(body, headers, "whsec_c2VjcmV0")
        True
        >>> verify_signature(body + b" ", headers, secret="whsec_c2VjcmV0")
        False

    .. versionadded:: 0.1.0
    """
    if secret is None:
        secret = secret_or_secrets
    elif secret_or_secrets is not None:
        raise ConfigError("secret_or_secrets", "<hidden>", "only one of secret, secret_or_secrets")
    if secret is None:
        raise ConfigError("secret", None, "a signing secret or a list of them")
    try:
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
    except AttributeError:
        return False
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signature_header = lower.get("webhook-signature")
    if not msg_id or not stamp or not signature_header:
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if now is None:
        import time

        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - timestamp) > tolerance:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    secrets: Sequence[str | Secret]
    secrets = [secret] if isinstance(secret, (str, Secret)) else list(secret)
    given = [
        part.split(",", 1)[1].encode("ascii", "replace")
        for part in signature_header.split()
        if part.startswith("v1,")
    ]
    ok = False
    for one in secrets:
        expected = _signature(_key(one), msg_id, timestamp, body).encode("ascii")
        for candidate in given:
            # no early exit: every comparison runs, each in constant time
            ok |= hmac.compare_digest(expected, candidate)
    return ok


class WebhookSink(NetworkSink):
    """POST each event as signed JSON (see the module text for the headers).

    Args:
        url: the endpoint (treated as a secret: it may hold a token).
        url_env: or the environment variable holding it.
        secret: a signing secret, or a list of them (rotation: all sign each body).
            Without a secret nothing is signed.
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
    :class:`~wedguard.alerts.DeliveryError` (behind an
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
