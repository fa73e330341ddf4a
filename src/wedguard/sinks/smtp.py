"""E-mail through :mod:`smtplib`: STARTTLS or implicit TLS, optional login, text + HTML.

>>> sink = SmtpSink("mail.example.org", 587, sender="backup@example.org",
...                 recipients=["ops@example.org"], username="backup")
>>> sink
SmtpSink(name='smtp', host='mail.example.org', port=587, tls='starttls', recipients=1)
"""

from __future__ import annotations

import html
import smtplib
import ssl as _ssl
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from wedguard import _checks
from wedguard.clock import Clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks._common import (
    NetworkSink,
    Secret,
    event_colour,
    event_lines,
    event_title,
    resolve_secret,
)
from wedguard.sinks.delivery import DeliveryError, redact

__all__ = ["SmtpSink"]


def _address(value: object, field: str) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n"):
        raise ConfigError(field, value, "an e-mail address")
    return value


class SmtpSink(NetworkSink):
    """Send each event as an e-mail (plain text and HTML alternatives).

    Args:
        host: the SMTP server (default ``localhost``).
        port: its port (default 25; 587 for STARTTLS submission, 465 for ``ssl``).
        sender: the From address.
        recipients: one address or a list.
        starttls: upgrade the connection with STARTTLS (default: True unless ``ssl``;
            a server that does not offer it is an error, never a silent downgrade).
        ssl: implicit TLS from the first byte (port 465 style); ``starttls=True``
            with it is a ConfigError (one or the other).
        username: log in as this user (after TLS) when given.
        password: the password.
        password_env: or the environment variable holding it (read once, at
            construction; a variable that is not set is a ConfigError).
        timeout: seconds for connecting and each command.
        tls_context: the :class:`ssl.SSLContext` to use (default: the system's
            trusted CAs, hostname checked).
        subject_prefix: put before every subject.
        name: how logs and the dispatcher's spool call this sink.
        queue_size: how many events ``emit`` may queue.
        max_attempts: give an emitted event up after this many tries (None: never).
        backoff: the first retry delay in seconds (doubles, with jitter).
        backoff_max: the longest retry delay.
        clock: where time comes from.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 25,
        *,
        sender: str,
        recipients: str | Sequence[str],
        starttls: bool | None = None,
        ssl: bool = False,
        username: str | None = None,
        password: str | Secret | None = None,
        password_env: str | None = None,
        timeout: float = 10.0,
        tls_context: _ssl.SSLContext | None = None,
        subject_prefix: str = "[wedguard]",
        name: str = "smtp",
        queue_size: int = 1000,
        max_attempts: int | None = None,
        backoff: float = 5.0,
        backoff_max: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ConfigError("host", host, "a host name")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError("port", port, "a TCP port 1-65535")
        self.host = host
        self.port = port
        self.sender = _address(sender, "sender")
        rcpts = (
            [recipients]
            if isinstance(recipients, str)
            else list(_checks.items(recipients, "recipients", "one address or a list"))
        )
        if not rcpts:
            raise ConfigError("recipients", recipients, "at least one e-mail address")
        self.recipients = [_address(r, "recipients") for r in rcpts]
        for field, flag in (("starttls", starttls), ("ssl", ssl)):
            if flag is not None and not isinstance(flag, bool):
                raise ConfigError(field, flag, "True or False")
        if ssl and starttls:
            raise ConfigError(
                "starttls", starttls, "not with ssl=True (implicit TLS already encrypts; pick one)"
            )
        self.starttls = not ssl if starttls is None else starttls
        self.ssl = ssl
        if username is not None and (not isinstance(username, str) or not username):
            raise ConfigError("username", username, "a non-empty string or None")
        self.username = username
        self._password = resolve_secret(
            password, password_env, field="password", env_field="password_env"
        )
        if self._password is not None and username is None:
            raise ConfigError("username", None, "a user name when a password is given")
        if tls_context is not None and not isinstance(tls_context, _ssl.SSLContext):
            raise ConfigError("tls_context", tls_context, "an ssl.SSLContext")
        self._context = tls_context
        self.subject_prefix = subject_prefix
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
        if self._password is not None:
            yield self._password.reveal()

    def message(self, event: Event) -> EmailMessage:
        """The e-mail sent for ``event``."""
        title = event_title(event)
        lines = event_lines(event)
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix} {title}".strip()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(self._clock.now().timestamp(), localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[1])
        msg.set_content(title + "\n\n" + "\n".join(lines) + "\n")
        colour = event_colour(event)
        rows = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
        msg.add_alternative(
            "<html><body>"
            f'<h2 style="border-left:6px solid {colour};padding-left:8px">'
            f"{html.escape(title)}</h2>"
            f'<div style="font-family:monospace;white-space:pre">{rows}</div>'
            "</body></html>",
            subtype="html",
        )
        return msg

    def _tls_context(self) -> _ssl.SSLContext:
        # the default context loads the system's CAs (milliseconds): only when TLS is used
        return self._context or _ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.ssl:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls_context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            smtp.ehlo()
            smtp.starttls(context=self._tls_context())
            smtp.ehlo()
        return smtp

    def _send(self, event: Event, msg_id: str) -> None:
        msg = self.message(event)
        try:
            with self._connect() as smtp:
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password.reveal())
                smtp.send_message(msg)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused) as exc:
            raise DeliveryError(
                f"{type(exc).__name__} from {self.host}:{self.port}", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            text = redact(str(exc), self._secrets())
            raise DeliveryError(
                f"{type(exc).__name__} from {self.host}:{self.port}: {text}"
            ) from None

    def __repr__(self) -> str:
        tls = "ssl" if self.ssl else "starttls" if self.starttls else "none"
        return (
            f"SmtpSink(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"tls={tls!r}, recipients={len(self.recipients)})"
        )
