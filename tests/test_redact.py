"""wedguard.redact hides passwords, tokens and keys in URLs, DSNs, command lines and text,
and never raises whatever it is given."""

from __future__ import annotations

import doctest
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard.redact
from wedguard.redact import (
    MASK,
    is_sensitive_name,
    redact_arg,
    redact_argv,
    redact_dsn,
    redact_text,
    redact_url,
    url_has_secret,
)
from wedguard.sinks.delivery import redact

# secrets made of characters that survive in a URL unescaped, long enough to be unique
secrets = st.text(string.ascii_letters + string.digits + "-_.~", min_size=8, max_size=40).map(
    lambda s: "Zq" + s
)
# anything a user may type, spaces, quotes and all
any_secret = st.text(min_size=6, max_size=30).filter(lambda s: s.strip() == s and MASK not in s)


def test_docstring_examples() -> None:
    result = doctest.testmod(wedguard.redact, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw123@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://default:pw123@cache:6379/0", "redis://default:***@cache:6379/0"),
        (
            "rediss://cache:6380/0?password=pw123&ssl_cert_reqs=none",
            "rediss://cache:6380/0?password=***&ssl_cert_reqs=none",
        ),
        ("unix:///run/redis.sock?db=0&password=pw123", "unix:///run/redis.sock?db=0&password=***"),
        (
            "postgresql://backup:p%40ss@db/app?sslpassword=k1",
            "postgresql://backup:***@db/app?sslpassword=***",
        ),
        (
            "https://api.example.org/v1?api_key=k1&X-Amz-Signature=abc&page=2",
            "https://api.example.org/v1?api_key=***&X-Amz-Signature=***&page=2",
        ),
        (
            "https://example.org/cb#access_token=tok1&state=x",
            "https://example.org/cb#access_token=***&state=x",
        ),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/***",
        ),
        ("https://discord.com/api/webhooks/123/abcDEF", "https://discord.com/***"),
        ("https://example.org/hooks/abc", "https://example.org/***"),
        ("https://example.org/in/4f9a8c7e2b1d4e6fa0b3c5d7e9f1a2b3", "https://example.org/***"),
        (
            "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/x/y.git",
            "https://***@github.com/x/y.git",
        ),
        (
            "http://probe.example.org:8080/health?verbose=1",
            "http://probe.example.org:8080/health?verbose=1",
        ),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_redact_url_hides_the_secret_parts_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(password=secrets, user=st.sampled_from(["", "u", "backup"]))
def test_a_redis_password_never_shows(password: str, user: str) -> None:
    for url in (
        f"redis://{user}:{password}@cache.example.org:6379/0",
        f"redis://cache.example.org:6379/0?password={password}",
        f"rediss://{user}:{password}@[::1]:6380/2?password={password}&db=1",
        f"redis://:{password}@cache:notaport/0",  # what redis-py refuses, we still hide
        f"redis://:{password}@[::1/0",  # what urllib cannot even parse
    ):
        shown = redact_url(url)
        assert password not in shown
        assert url_has_secret(url)
        assert redact_url(shown) == shown  # redacting twice changes nothing


@given(text=st.text(max_size=200))
def test_redact_functions_never_raise(text: str) -> None:
    for fn in (redact_url, redact_dsn, redact_text, redact_arg, url_has_secret, is_sensitive_name):
        fn(text)
    assert isinstance(redact_argv([text, text]), tuple)
    assert isinstance(redact_text(text, [text, "", None, b"x"]), str)


@given(token=any_secret)
def test_a_known_secret_never_shows_in_text(token: str) -> None:
    url = f"https://hooks.example.org/hooks/{token}"
    message = f"InvalidURL: URL can't contain control characters. {'/hooks/' + token!r}"
    for text in (message, f"posting to {url}", f"POST {token} failed", token):
        assert token not in redact_text(text, [url, token])


def test_a_webhook_token_split_by_a_bad_character_is_hidden_in_every_form() -> None:
    url = "https://h.example.org/hooks/T0KEN123abc\nrest456"
    for text in (
        "URL can't contain control characters. '/hooks/T0KEN123abc\\nrest456' (found at least '\\n')",
        "bad path /hooks/T0KEN123abc%0Arest456",
        "T0KEN123abc",
    ):
        shown = redact_text(text, [url])
        assert "T0KEN123abc" not in shown, shown
        assert "rest456" not in shown, shown
    assert redact("x T0KEN123abc", [url]) == "x ***"  # the old name works the same


# -- DSNs ------------------------------------------------------------------------------------


@given(password=secrets)
def test_a_dsn_password_never_shows(password: str) -> None:
    for dsn in (
        f"postgresql://backup:{password}@db.example.org:5432/app",
        f"postgres://db/app?user=backup&password={password}",
        f"host=db user=backup password={password} dbname=app",
        f"host=db password = '{password} with spaces' dbname=app",
        f"mysql://root:{password}@127.0.0.1/app",
    ):
        shown = redact_dsn(dsn)
        assert password not in shown, shown
        assert "app" in shown


def test_redact_dsn_keeps_what_helps() -> None:
    assert redact_dsn("host=db port=5432 dbname=app password=x sslmode=verify-full") == (
        "host=db port=5432 dbname=app password=*** sslmode=verify-full"
    )


# -- command lines ---------------------------------------------------------------------------


@given(password=secrets)
def test_a_password_in_argv_never_shows(password: str) -> None:
    argvs = [
        ["pg_dump", f"postgresql://u:{password}@h/db", "-Fc"],
        ["pg_dump", f"--dbname=postgresql://u:{password}@h/db"],
        ["pg_dump", f"host=h password={password} dbname=db"],
        ["mysqldump", f"--password={password}", "app"],
        ["mysqldump", "--password", password, "app"],
        ["mysqldump", f"-p{password}", "app"],
        ["env", f"PGPASSWORD={password}", "pg_dump", "db"],
        ["env", f"AWS_SECRET_ACCESS_KEY={password}", "restic", "backup"],
        ["restic", "--repo", f"rest:https://u:{password}@backup.example.org/repo"],
        ["curl", "-H", f"Authorization: Bearer {password}", "https://example.org"],
        ["rclone", "--token", password, "sync"],
        ["tool", f"--api-key={password}"],
    ]
    for argv in argvs:
        shown = redact_argv(argv)
        assert password not in " ".join(shown), shown
        assert shown[0] == argv[0]
        assert len(shown) == len(argv)


def test_redact_argv_keeps_ordinary_arguments() -> None:
    argv = ["pg_dump", "-h", "db", "-p", "5432", "-U", "backup", "--no-password", "app"]
    assert redact_argv(argv) == tuple(argv)
    assert redact_argv(["tar", "-cf", "/backups/x.tar", "/srv"]) == (
        "tar",
        "-cf",
        "/backups/x.tar",
        "/srv",
    )


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("password", True),
        ("PGPASSWORD", True),
        ("sslpassword", True),
        ("api-key", True),
        ("X-Amz-Signature", True),
        ("sig", True),
        ("access_token", True),
        ("client_secret", True),
        ("auth", True),
        ("db", False),
        ("sslmode", False),
        ("page", False),
        ("monkey", False),
        ("keyspace", False),
    ],
)
def test_sensitive_names(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


@given(password=secrets)
def test_a_url_whose_slashes_a_path_collapsed_still_hides_its_password(password: str) -> None:
    """Path(...) turns ``postgresql://u:pw@db`` into ``postgresql:/u:pw@db``."""
    for text in (f"postgresql:/u:{password}@db/app: no such file", f"x redis:/:{password}@cache"):
        assert password not in redact_text(text)
