"""Hiding secrets in everything wedguard shows: URLs, DSNs, command lines, free text.

wedguard shows URLs (Redis, webhooks, probes), database DSNs and the command lines of
the children it guards in error messages, log lines, reprs, status files and the
command line's output. Each of those passes through one of these functions first:

* :func:`redact_url`: the password in the user part, query and fragment parameters
  whose names say they are secret (``password``, ``token``, ``key``, ``sig``, ...),
  and the path of webhook-like URLs (a Slack or Discord webhook path *is* the token);
* :func:`redact_dsn`: a database DSN, in URL form or libpq ``key=value`` form;
* :func:`redact_argv`: a command line (``--password=x``, ``--password x``,
  ``PGPASSWORD=x``, DSNs and URLs inside arguments, ``Authorization:`` headers);
* :func:`redact_text`: free text, with known secrets removed in every form they may
  take in a message (as given, percent-encoded, escaped, the parts of a URL) and the
  patterns above hidden too.

The functions never raise: what they cannot parse is hidden, not shown. They hide
more rather than less (``pg_dump --password mydb`` shows ``--password ***``).

>>> redact_url("redis://:hunter2@cache:6379/0?password=hunter2&db=1")
'redis://:***@cache:6379/0?password=***&db=1'
>>> redact_url("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX")
'https://hooks.slack.com/***'
>>> redact_dsn("host=db user=backup password='s3 cret' dbname=app")
'host=db user=backup password=*** dbname=app'
>>> redact_argv(["pg_dump", "postgresql://u:pw@db/app", "--password=x", "PGPASSWORD=y"])
('pg_dump', 'postgresql://u:***@db/app', '--password=***', 'PGPASSWORD=***')
>>> redact_text("connect failed for /hooks/T0KEN", ["https://h/hooks/T0KEN"])
'connect failed for ***'

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = [
    "MASK",
    "is_sensitive_name",
    "redact_arg",
    "redact_argv",
    "redact_dsn",
    "redact_text",
    "redact_url",
    "secret_forms",
    "url_has_secret",
]

MASK: Final = "***"
"""What a hidden value is replaced by."""

# a name is sensitive when, with separators removed, it contains one of these ...
_WORDS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "signature",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "auth",
    "sessionid",
    "cookie",
)
# ... or when one of its parts (split on - _ . and so on) is one of these
_PARTS: Final = frozenset({"key", "sig", "pass", "pw", "pwd", "sas", "jwt", "bearer"})

# hosts whose webhook paths are tokens
_WEBHOOK_HOSTS: Final = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "outlook.office.com",
    "hooks.zapier.com",
    "chat.googleapis.com",
    "api.telegram.org",
    "events.pagerduty.com",
    "maker.ifttt.com",
)

_URL: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<netloc>[^/?#]*)(?P<path>[^?#]*)"
    r"(?P<query>\?[^#]*)?(?P<fragment>#.*)?",
    re.DOTALL,
)
# a URL inside free text: up to whitespace or a quote
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# user:password@ after a scheme, also where a path normalisation collapsed "//" to "/"
_USERINFO_IN_TEXT: Final = re.compile(
    r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*:/{1,2})(?P<user>[^\s/@:'\"]*):[^\s/@'\"]+@"
)
# name=value (libpq DSNs, env assignments, query strings, log lines)
_PAIR: Final = re.compile(
    r"(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;,'\"]*)",
    re.DOTALL,
)
# HTTP header lines that carry credentials
_HEADER: Final = re.compile(
    r"(?i)\b(?P<key>(?:proxy-)?authorization|cookie|set-cookie|x-[\w-]*(?:token|key|secret"
    r"|signature|auth)[\w-]*|api-key|webhook-signature)(?P<sep>\s*:\s*)(?P<value>[^\r\n'\"()]+)"
)
_BEARER: Final = re.compile(r"(?i)\b(?P<key>bearer|basic)(?P<sep>\s+)(?P<value>[\w.~+/=\-]{6,})")
_TOKENISH: Final = re.compile(r"[\w.~+/=\-%]{16,}", re.ASCII)
_SPLIT: Final = re.compile(r"[\s\x00-\x1f\x7f]+")


def is_sensitive_name(name: str) -> bool:
    """True when a parameter, option or variable called ``name`` holds a secret.

    >>> tuple(is_sensitive_name(n) for n in ("PGPASSWORD", "api_key", "sig", "db", "monkey"))
    (True, True, True, False, False)
    """
    low = str(name).lower()
    squashed = re.sub(r"[^a-z0-9]", "", low)
    if any(word in squashed for word in _WORDS):
        return True
    return any(part in _PARTS for part in re.split(r"[^a-z0-9]+", low))


def _looks_like_token(text: str) -> bool:
    """A long run of token characters with letters and digits mixed."""
    return (
        _TOKENISH.fullmatch(text) is not None
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def _params(text: str, sep: str) -> str:
    """``a=1&token=x`` with the values of sensitive names hidden."""
    out = []
    for item in re.split(f"([{re.escape(sep)}])", text):
        if item in sep:
            out.append(item)
            continue
        name, eq, _value = item.partition("=")
        if eq and is_sensitive_name(urllib.parse.unquote(name)):
            out.append(f"{name}={MASK}")
        elif not eq and _looks_like_token(item):
            out.append(MASK)
        else:
            out.append(item)
    return "".join(out)


def _host_of(netloc: str) -> str:
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0].lower()


def _webhook_path(host: str, path: str) -> bool:
    if any(host == h or host.endswith("." + h) for h in _WEBHOOK_HOSTS):
        return True
    if "hook" in path.lower():
        return True
    return any(_looks_like_token(seg) for seg in path.split("/"))


def redact_url(url: object, *, path: bool | None = None) -> str:
    """``url`` with its secrets hidden; never raises.

    Hidden: the password of the user part (a user part without a password that looks
    like a token, as in ``https://<token>@host``), the values of query and fragment
    parameters with sensitive names, and the path when ``path`` is True, or, by
    default, when the URL looks like a webhook (a known webhook host, ``hook`` in the
    path, or a path segment that looks like a token). A string that is not a URL is
    treated as free text (:func:`redact_text`).

    >>> redact_url("postgresql://backup:pw@db:5432/app?sslmode=require")
    'postgresql://backup:***@db:5432/app?sslmode=require'
    >>> redact_url("https://example.org/api/hook/abc?sig=123")
    'https://example.org/***?sig=***'
    >>> redact_url("https://example.org/status", path=True)
    'https://example.org/***'
    """
    text = url if isinstance(url, str) else str(url)
    match = _URL.fullmatch(text)
    if match is None:
        return _scrub(text)
    scheme, netloc = match["scheme"], match["netloc"]
    user_part, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = user_part.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{host}"
        elif _looks_like_token(user) or is_sensitive_name(urllib.parse.unquote(user)):
            netloc = f"{MASK}@{host}"
    url_path = match["path"]
    hide = _webhook_path(_host_of(netloc), url_path) if path is None else path
    if hide and url_path not in ("", "/"):
        url_path = "/" + MASK
    query = match["query"]
    query = "" if query is None else "?" + _params(query[1:], "&;")
    fragment = match["fragment"]
    fragment = "" if fragment is None else "#" + _params(fragment[1:], "&;")
    return f"{scheme}{netloc}{url_path}{query}{fragment}"


def url_has_secret(url: object) -> bool:
    """True when :func:`redact_url` (path kept) would hide part of ``url``.

    For checking that a URL written in a configuration file carries no secret.

    >>> url_has_secret("redis://cache:6379/0"), url_has_secret("redis://cache/0?password=x")
    (False, True)
    """
    text = url if isinstance(url, str) else str(url)
    return redact_url(text, path=False) != text


def redact_dsn(dsn: object) -> str:
    """A database DSN with its password hidden; never raises.

    Both forms are understood: a URL (``postgresql://user:pw@host/db?password=x``) and
    libpq's ``key=value`` form (``host=db password='x y'``).

    >>> redact_dsn("postgresql://backup:pw@db/app")
    'postgresql://backup:***@db/app'
    >>> redact_dsn("host=db password = pw sslpassword=k")
    'host=db password=*** sslpassword=***'
    """
    text = dsn if isinstance(dsn, str) else str(dsn)
    if "://" in text:
        return (
            redact_url(text.strip(), path=False) if _URL.fullmatch(text.strip()) else _scrub(text)
        )
    return _scrub(text)


def _hide_pair(match: re.Match[str]) -> str:
    if is_sensitive_name(match["key"]):
        return f"{match['key']}={MASK}"
    return match[0]


def _scrub(text: str) -> str:
    """Hide the patterns: URLs, sensitive ``name=value`` pairs, credential headers."""
    text = _USERINFO_IN_TEXT.sub(lambda m: f"{m['pre']}{m['user']}:{MASK}@", text)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m[0]), text)
    text = _PAIR.sub(_hide_pair, text)
    text = _HEADER.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)


def secret_forms(secret: str) -> list[str]:
    """The ways ``secret`` may appear in a message, longest first.

    As given, ``repr``-escaped, percent-encoded, its parts when it is a URL (the
    password, the path, the query, token-like path segments: a library that rejects
    a URL often quotes only its path), and the pieces between the whitespace or
    control characters it contains.

    >>> forms = secret_forms("https://h/hooks/T0KEN")
    >>> "https://h/hooks/T0KEN" in forms, "/hooks/T0KEN" in forms, "https%3A%2F%2Fh%2Fhooks%2FT0KEN" in forms
    (True, True, True)
    """
    base = {secret, urllib.parse.unquote(secret)}
    match = _URL.fullmatch(secret)
    if match is not None:
        user_part, at, _host = match["netloc"].rpartition("@")
        if at:
            base.add(user_part.partition(":")[2] or user_part)
        url_path = match["path"]
        if len(url_path) > 1:
            base.add(url_path)
            base.update(s for s in url_path.split("/") if len(s) >= 8 or _looks_like_token(s))
        for part in (match["query"], match["fragment"]):
            if part and len(part) > 1:
                base.add(part[1:])
                base.update(
                    value
                    for _name, _eq, value in (p.partition("=") for p in re.split("[&;]", part[1:]))
                    if len(value) >= 4
                )
        if len(url_path) > 1 or match["query"]:
            base.add(url_path + (match["query"] or ""))
    forms: set[str] = set()
    for form in base:
        pieces = [piece for piece in _SPLIT.split(form) if len(piece) >= 4]
        for one in (form, *pieces):
            forms.add(one)
            forms.add(repr(one)[1:-1])
            forms.add(urllib.parse.quote(one, safe=""))
            forms.add(urllib.parse.quote(one))
            forms.add(urllib.parse.quote_plus(one))
    forms.discard("")
    return sorted(forms, key=lambda f: (-len(f), f))


def _reveal(secret: Any) -> str | None:
    reveal = getattr(secret, "reveal", None)
    value = reveal() if callable(reveal) else secret
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def redact_text(text: object, secrets: Iterable[Any] = ()) -> str:
    """``text`` with every known secret and every recognisable secret hidden.

    ``secrets`` are strings (or :class:`~wedguard.sinks.Secret` objects, or bytes)
    that must not appear in any form (see :func:`secret_forms`); empty ones are
    ignored. Then URLs, ``name=value`` pairs with sensitive names and credential
    headers are hidden as :func:`redact_url` and :func:`redact_dsn` do. Never raises.

    >>> redact_text("login failed for hunter2", ["hunter2"])
    'login failed for ***'
    >>> redact_text("retrying redis://:pw@cache/0 (Authorization: Bearer abcdef123)")
    'retrying redis://:***@cache/0 (Authorization: ***)'
    """
    out = text if isinstance(text, str) else str(text)
    forms: set[str] = set()
    for secret in secrets:
        value = _reveal(secret)
        if value is not None:
            forms.update(secret_forms(value))
    for form in sorted(forms, key=lambda f: (-len(f), f)):
        out = out.replace(form, MASK)
    return _scrub(out)


def _secret_flag(arg: str) -> bool:
    """``--password`` and the like (not ``--no-password``, not one-letter flags)."""
    if not arg.startswith("-") or "=" in arg:
        return False
    name = arg.lstrip("-")
    return len(name) > 1 and not name.lower().startswith("no-") and is_sensitive_name(name)


def redact_arg(arg: object, *, program: str = "") -> str:
    """One command-line argument with its secrets hidden; never raises.

    ``--flag=value`` and ``NAME=value`` with sensitive names hide the whole value;
    any other argument is treated as text (URLs, DSNs, headers inside it). For the
    MySQL family of ``program``, ``-pSECRET`` is hidden too.

    >>> redact_arg("--dbname=postgresql://u:pw@db/app")
    '--dbname=postgresql://u:***@db/app'
    >>> redact_arg("-psecret", program="mysqldump")
    '-p***'
    """
    text = os.fsdecode(arg) if isinstance(arg, (bytes, os.PathLike)) else str(arg)
    flag, eq, value = text.partition("=")
    if eq and text.startswith("-"):
        if is_sensitive_name(flag.lstrip("-")):
            return f"{flag}={MASK}"
        return f"{flag}={redact_text(value)}"
    if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", flag):
        if is_sensitive_name(flag):
            return f"{flag}={MASK}"
        return f"{flag}={redact_text(value)}"
    base = os.path.basename(program).lower()
    if base.startswith(("mysql", "mariadb")) and len(text) > 2 and text.startswith("-p"):
        return "-p" + MASK
    return redact_text(text)


def redact_argv(argv: Sequence[object]) -> tuple[str, ...]:
    """A command line with its secrets hidden, argument by argument; never raises.

    After a flag such as ``--password`` or ``--token`` (given without ``=``), the next
    argument is hidden whole.

    >>> redact_argv(["mysqldump", "--password", "pw", "-psecret", "app"])
    ('mysqldump', '--password', '***', '-p***', 'app')
    >>> redact_argv(["env", "AWS_SECRET_ACCESS_KEY=abc", "restic", "backup", "/srv"])
    ('env', 'AWS_SECRET_ACCESS_KEY=***', 'restic', 'backup', '/srv')
    """
    try:
        items = list(argv)
    except TypeError:
        return (redact_text(argv),)
    out: list[str] = []
    hide_next = False
    program = ""
    for arg in items:
        text = os.fsdecode(arg) if isinstance(arg, (bytes, os.PathLike)) else str(arg)
        if not program:
            program = text
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        shown = redact_arg(text, program=program)
        out.append(shown)
        hide_next = shown == text and _secret_flag(text)
    return tuple(out)
