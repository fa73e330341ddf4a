"""``[[sources]]`` and ``[[sinks]]``: their schemas, the checks a file's entries pass
when it is read, and the sources and sinks built from them."""

from __future__ import annotations

import contextlib
import importlib
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from wedguard import sinks
from wedguard import sources as src
from wedguard.clock import Clock
from wedguard.config.checks import (
    Check,
    Context,
    check_alerts_route,
    check_bool,
    check_cgroup,
    check_cores,
    check_duration_or_off,
    check_env_name,
    check_fraction,
    check_host,
    check_int,
    check_labels,
    check_path,
    check_port,
    check_positive_duration,
    check_resources,
    check_size,
    check_str,
    check_strings,
    check_table,
    check_timeout,
    check_url,
    environment,
    split_url,
    take,
)
from wedguard.config.sections import SinkSpec, SourceSpec
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink, Source
from wedguard.redact import redact_dsn, redact_url, url_has_secret
from wedguard.runtime.alerts import Severity
from wedguard.sources.pg_backends import BackendPriority

_METRIC: Check = check_str


_SOURCE_SCHEMAS: dict[str, dict[str, Check]] = {
    "system": {"cgroup": check_cgroup, "disks": check_bool, "network": check_bool},
    "process": {"pid": check_int(1), "include_children": check_bool, "prefix": check_str},
    "http": {
        "url": check_url,
        "timeout": check_timeout,
        "method": check_str,
        "metric": _METRIC,
        "burst": check_int(1),
        "percentile": check_fraction,
    },
    "service_latency": {
        "url": check_url,
        "histogram": check_str,
        "metric": _METRIC,
        "quantile": check_fraction,
        "labels": check_labels,
        "timeout": check_timeout,
        "min_requests": check_int(1),
    },
    "pressure": {
        "cgroup": check_path,
        "resources": check_resources,
        "system": check_bool,
        "prefix": check_str,
    },
    "database": {
        "dsn": check_str,
        "dsn_env": check_env_name,
        "password_env": check_env_name,
        "metric": _METRIC,
        "timeout": check_timeout,
        "query": check_str,
    },
    "postgres": {
        "dsn": check_str,
        "dsn_env": check_env_name,
        "password_env": check_env_name,
        "query": check_str,
        "timeout": check_timeout,
        "name": check_str,
        "statements": check_bool,
        "backoff": check_positive_duration,
        "backoff_max": check_positive_duration,
        "lower_backends": check_str,
        "backend_cpus": check_cores,
        "backend_watch": check_duration_or_off,
    },
}


_REQUIRED: dict[str, tuple[str, ...]] = {"http": ("url",), "service_latency": ("url",)}


_DRIVERS = {
    "postgresql": (("psycopg", "psycopg2"), "PostgreSQL", "pip install psycopg (or psycopg2)"),
    "postgres": (("psycopg", "psycopg2"), "PostgreSQL", "pip install psycopg (or psycopg2)"),
    "mysql": (("pymysql",), "MySQL", "pip install pymysql"),
}


def _find_driver(scheme: str) -> str | None:
    for module in _DRIVERS[scheme][0]:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return module
    return None


def _database_source(ctx: Context, index: int, options: Mapping[str, Any], *, env: bool) -> None:
    """Check a database probe: one DSN, a known scheme, an installed driver."""
    where = f"sources[{index}]"
    if ("dsn" in options) == ("dsn_env" in options):
        raise ctx.error(f"{where}.dsn", None, "exactly one of dsn or dsn_env")
    if "dsn" in options:
        dsn = options["dsn"]
        if url_has_secret(dsn):
            raise ctx.error(
                f"{where}.dsn",
                redact_url(dsn),
                "a DSN without a password (put it in password_env, or the DSN in dsn_env)",
            )
    elif env:
        dsn = environment(ctx, f"{where}.dsn_env", options["dsn_env"])
    else:
        return
    scheme = split_url(dsn).scheme.split("+", 1)[0]
    if scheme not in _DRIVERS:
        raise ctx.error(
            f"{where}.dsn", redact_url(dsn), "a postgresql://, postgres:// or mysql:// DSN"
        )
    if _find_driver(scheme) is None:
        modules, name, hint = _DRIVERS[scheme]
        raise ctx.error(
            f"{where}.type",
            "database",
            f"a {name} driver installed ({' or '.join(modules)} is missing: {hint})",
        )
    if "password_env" in options:
        environment(ctx, f"{where}.password_env", options["password_env"])


def _postgres_source(ctx: Context, index: int, options: Mapping[str, Any]) -> None:
    """Check a PostgreSQL source: one DSN, and no password written in the file."""
    where = f"sources[{index}]"
    if ("dsn" in options) == ("dsn_env" in options):
        raise ctx.error(f"{where}.dsn", None, "exactly one of dsn or dsn_env")
    for key in ("backend_cpus", "backend_watch"):
        if key in options and "lower_backends" not in options:
            raise ctx.error(f"{where}.{key}", options[key], "lower_backends set beside it")
    dsn = options.get("dsn")
    if dsn is not None and redact_dsn(dsn) != dsn:
        raise ctx.error(
            f"{where}.dsn",
            redact_dsn(dsn),
            "a DSN without a password (put it in password_env, or the DSN in dsn_env)",
        )


def _typed_tables(
    ctx: Context,
    value: object,
    section: str,
    schemas: Mapping[str, Any],
    required: Mapping[str, tuple[str, ...]],
    common: Mapping[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """Each ``[[section]]`` table as ``(index, where, type, options)``: the type is one of
    ``schemas``, the keys are that type's (plus ``common``), the required keys are there
    and no key in ``secrets`` is given in the file."""
    if not isinstance(value, list):
        raise ctx.error(section, value, f"an array of tables ([[{section}]])")
    noun = section[:-1]
    for i, entry in enumerate(value):
        where = f"{section}[{i}]"
        table = dict(check_table(ctx, entry, where))
        kind = table.pop("type", None)
        if not isinstance(kind, str) or kind not in schemas:
            raise ctx.error(f"{where}.type", kind, "one of " + ", ".join(schemas))
        for key in secrets:
            if key in table:
                raise ctx.error(
                    f"{where}.{key}",
                    "***",
                    f"{key}_env naming an environment variable (secrets are never read from the file)",
                )
        schema = schemas[kind] if common is None else {**schemas[kind], **common}
        options = take(ctx, table, where, schema)
        for key in required.get(kind, ()):
            if key not in options:
                raise ctx.error(f"{where}.{key}", None, f"a {key} for a {kind} {noun}")
        yield i, where, kind, options


def parse_sources(ctx: Context, value: object, *, env: bool) -> tuple[SourceSpec, ...]:
    specs = []
    for i, _where, kind, options in _typed_tables(
        ctx, value, "sources", _SOURCE_SCHEMAS, _REQUIRED
    ):
        if kind == "database":
            _database_source(ctx, i, options, env=env)
        elif kind == "postgres":
            _postgres_source(ctx, i, options)
        specs.append(SourceSpec(kind, options, i))
    return tuple(specs)


def _connect(dsn: str, password: str | None, timeout: float) -> Any:
    """A database connection from a DSN with the driver that is installed."""
    parts = urllib.parse.urlsplit(dsn)
    scheme = parts.scheme.split("+", 1)[0]
    module_name = _find_driver(scheme)
    if module_name is None:  # pragma: no cover - checked when the file was read
        raise ConfigError("dsn", redact_url(dsn), "a database driver installed")
    module = importlib.import_module(module_name)
    if module_name in ("psycopg", "psycopg2"):
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
        if password is not None:
            kwargs["password"] = password
        conn = module.connect(dsn, **kwargs)
        with contextlib.suppress(Exception):
            conn.autocommit = True
        return conn
    query = urllib.parse.parse_qs(parts.query)
    return module.connect(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or ""),
        password=password if password is not None else urllib.parse.unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        connect_timeout=timeout,
        autocommit=True,
        **({"charset": query["charset"][0]} if "charset" in query else {}),
    )


class _DatabaseCheck:
    """Runs the probe query on one connection, reconnecting after a failure."""

    def __init__(self, dsn: str, password: str | None, timeout: float, query: str) -> None:
        self._dsn = dsn
        self._password = password
        self._timeout = timeout
        self._query = query
        self._conn: Any = None

    def __call__(self) -> None:
        try:
            if self._conn is None:
                self._conn = _connect(self._dsn, self._password, self._timeout)
            cur = self._conn.cursor()
            try:
                cur.execute(self._query)
                cur.fetchall()
            finally:
                cur.close()
        except Exception:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise

    def __repr__(self) -> str:
        return f"database probe {redact_url(self._dsn)}"


def build_source(ctx: Context, spec: SourceSpec) -> Source:
    opts = dict(spec.options)
    try:
        if spec.type == "system":
            cgroup = opts.pop("cgroup", None)
            return src.SystemSource(cgroup=cgroup, **opts)
        if spec.type == "process":
            return src.ProcessSource(**opts)
        if spec.type == "http":
            return src.HttpProbe(**opts)
        if spec.type == "service_latency":
            return src.ServiceLatencySource(**opts)
        if spec.type == "pressure":
            if "resources" in opts:
                opts["resources"] = tuple(opts["resources"])
            return src.PressureSource(**opts)
        if spec.type == "postgres":
            where = f"sources[{spec.index}]"
            dsn = opts.pop("dsn", None) or environment(ctx, f"{where}.dsn_env", opts.pop("dsn_env"))
            if "password_env" in opts:
                opts["password"] = environment(
                    ctx, f"{where}.password_env", opts.pop("password_env")
                )
            if opts.get("backend_watch") is False:  # false in the file: at samples only
                opts["backend_watch"] = None
            if "backend_cpus" in opts:  # the backend on the dump's cores, as well as lowered
                opts["backend_priority"] = BackendPriority(cpus=opts.pop("backend_cpus"))
            return src.PostgresSource(dsn, **opts)
        # database
        dsn = opts.get("dsn") or environment(ctx, f"sources[{spec.index}].dsn_env", opts["dsn_env"])
        password = (
            environment(ctx, f"sources[{spec.index}].password_env", opts["password_env"])
            if "password_env" in opts
            else None
        )
        timeout = float(opts.get("timeout", 2.0))
        check = _DatabaseCheck(dsn, password, timeout, opts.get("query", "SELECT 1"))
        return src.CallableProbe(check, opts.get("metric", "db.latency_s"), timeout=timeout)
    except ConfigError as exc:
        raise ctx.rewrap(f"sources[{spec.index}]", exc) from None


_DELIVERY: dict[str, Check] = {
    "timeout": check_timeout,
    "max_attempts": check_int(1),
    "backoff": check_positive_duration,
    "backoff_max": check_positive_duration,
}


_COMMON_SINK: dict[str, Check] = {"name": check_str, "alerts": check_alerts_route}


_SINK_SCHEMAS: dict[str, dict[str, Check]] = {
    "logging": {"logger": check_str},
    "jsonl": {
        "path": check_path,
        "max_bytes": check_size,
        "backups": check_int(0),
        "fsync": check_bool,
    },
    "webhook": {"url_env": check_env_name, "secret_env": check_env_name, **_DELIVERY},
    "slack": {
        "url_env": check_env_name,
        "channel": check_str,
        "username": check_str,
        "icon_emoji": check_str,
        **_DELIVERY,
    },
    "smtp": {
        "port": check_port(1),
        "host": check_host,
        "sender": check_str,
        "recipients": check_strings,
        "starttls": check_bool,
        "ssl": check_bool,
        "username": check_str,
        "password_env": check_env_name,
        "subject_prefix": check_str,
        **_DELIVERY,
    },
    "prometheus": {"namespace": check_str, "port": check_port(0), "addr": check_host},
}


_SINK_REQUIRED: dict[str, tuple[str, ...]] = {
    "jsonl": ("path",),
    "webhook": ("url_env",),
    "slack": ("url_env",),
    "smtp": ("sender", "recipients"),
}


# network sinks are alert routes unless told otherwise; the rest hear every event
_DEFAULT_ROUTE = {"slack": Severity.HIGH, "smtp": Severity.HIGH}


_SECRET_KEYS = ("url", "secret", "password", "token", "dsn_password")


def parse_sinks(ctx: Context, value: object, *, env: bool) -> tuple[SinkSpec, ...]:
    specs = []
    for i, where, kind, options in _typed_tables(
        ctx, value, "sinks", _SINK_SCHEMAS, _SINK_REQUIRED, _COMMON_SINK, _SECRET_KEYS
    ):
        route = options.pop("alerts", _DEFAULT_ROUTE.get(kind))
        if env:
            for key in ("url_env", "secret_env", "password_env"):
                if key in options:
                    environment(ctx, f"{where}.{key}", options[key])
        specs.append(SinkSpec(kind, options, route, i))
    return tuple(specs)


def build_sink(
    ctx: Context, spec: SinkSpec, clock: Clock | None, *, serve: bool = True
) -> tuple[Sink, Any]:
    """The sink, and something to close at the end (or None). ``serve=False`` starts no
    HTTP server (for checking a file)."""
    opts = dict(spec.options)
    try:
        if spec.type == "logging":
            return sinks.LoggingSink(opts.pop("logger", "wedguard.events"), **opts), None
        if spec.type == "jsonl":
            jsonl = sinks.JsonlSink(opts.pop("path"), **opts)
            return jsonl, jsonl
        if spec.type == "webhook":
            hook = sinks.WebhookSink(clock=clock, **opts)
            return hook, hook
        if spec.type == "slack":
            slack = sinks.SlackSink(clock=clock, **opts)
            return slack, slack
        if spec.type == "smtp":
            opts["recipients"] = list(opts["recipients"])
            smtp = sinks.SmtpSink(clock=clock, **opts)
            return smtp, smtp
        # prometheus
        port = opts.pop("port", None)
        addr = opts.pop("addr", "127.0.0.1")
        prom = sinks.PrometheusSink(**opts)
        server = None
        if port is not None and serve:
            import prometheus_client  # the extra "prometheus": imported when a port is served

            try:
                server = prometheus_client.start_http_server(
                    port, addr=addr, registry=prom.registry
                )
            except OSError as exc:
                raise ctx.error(f"sinks[{spec.index}].port", port, f"a free port ({exc})") from None
        return prom, server
    except ConfigError as exc:
        if exc.field.startswith(ctx.file):
            raise
        raise ctx.rewrap(f"sinks[{spec.index}]", exc) from None


def dry_run(
    ctx: Context, sources: Sequence[SourceSpec], sinks: Sequence[SinkSpec], *, env: bool
) -> None:
    """Build every source and sink once, so what their constructors check is checked
    when the file is read. None of them does I/O before it is used (network sinks
    start their thread on the first event; no HTTP server is started here)."""
    for source in sources:
        if env or (
            source.type != "database" and not any(k.endswith("_env") for k in source.options)
        ):
            build_source(ctx, source)
    for sink_spec in sinks:
        if not env and any(k.endswith("_env") for k in sink_spec.options):
            continue
        _sink, closer = build_sink(ctx, sink_spec, None, serve=False)
        if closer is not None and callable(getattr(closer, "close", None)):
            with contextlib.suppress(Exception):
                closer.close()
