"""S3 as a backup target: throttled, breaker-guarded, resumable multipart uploads.

Two ways to pace boto3 through a guard need nothing from this module:
``Callback=`` on ``upload_file``/``upload_fileobj`` (see :func:`progress`) and a
guarded file object (``guard.wrap(f)`` given to ``upload_fileobj``). What boto3 does
not do is *resume*: a multipart upload that fails half-way starts again from byte 0
the next night. :func:`upload_file` fixes that:

* the file goes up in parts of ``part_size`` bytes, one at a time, each part paced by
  the guard's session (rate, calendar, impact) and sent under the guard's circuit
  breaker (a failing endpoint opens it; :class:`~wedguard.CircuitOpenError` says when
  to try again);
* the upload id and the ETag of every finished part are kept in a small JSON state
  file (written atomically: a crash leaves the old state or the new one, never half);
* the next call with the same file, bucket and key asks the server which parts it
  holds (``list_parts``), uploads only the missing ones and completes the upload;
  a part the server holds that this state did not record is reused only when its
  ETag is the MD5 of the local bytes;
* a source that changed since (size or modification time) starts a new upload and
  aborts the old one; :func:`abort_upload` aborts on request.

boto3 is imported by the caller (the ``client`` argument), never by this module, so
``import wedguard.io.s3`` costs nothing; install the ``s3`` extra for boto3.

Example::

    import boto3, wedguard as wg
    from wedguard.io.s3 import upload_file

    guard = wg.Guard(rate="10MB/s")
    s3 = boto3.client("s3")
    result = upload_file(guard, s3, "/var/backups/app.dump", "backups", "app.dump")
    print(result.uploaded_parts, "parts sent,", result.reused_parts, "already there")

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from wedguard.errors import CircuitOpenError, ConfigError, WedguardError
from wedguard.units import parse_size

if TYPE_CHECKING:
    from wedguard.interfaces import GuardLike, SessionLike

__all__ = [
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "MTIME_KEY",
    "S3CopyJob",
    "SourceChangedError",
    "UploadResult",
    "abort_upload",
    "default_client",
    "parse_url",
    "progress",
    "state_path",
    "upload_file",
]

MIN_PART_SIZE: Final = 5 * 2**20
"""S3's smallest part (every part but the last): 5 MiB."""
MAX_PART_SIZE: Final = 5 * 2**30
MAX_PARTS: Final = 10_000
"""S3's largest number of parts in one upload."""
_STATE_VERSION: Final = 1
_NO_UPLOAD: Final = ("NoSuchUpload", "404")


def progress(session: SessionLike) -> Callable[[int], None]:
    """A boto3 ``Callback=`` that paces a transfer through ``session``.

    s3transfer calls it with the bytes just sent. When a body is rewound while its
    callbacks are on, s3transfer reports the rewind as a negative amount. That is not
    a budget to hand back (the bytes go over the wire again and are counted again as
    they do), so it is skipped here; ``Callback=s.throttle`` would refuse it with a
    ``ConfigError``. (botocore's own retries rewind with callbacks off: there both
    forms work.)

    Example::

        with guard.session("photos") as s:
            s3.upload_file(path, "backups", key, Callback=progress(s))

    >>> import wedguard as wg
    >>> from wedguard.testing import FakeClock
    >>> guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
    >>> with guard.session("s3") as s:
    ...     cb = progress(s)
    ...     for n in (400_000, -400_000, 400_000, 400_000):
    ...         cb(n)
    >>> s.report().bytes, round(guard.clock.monotonic(), 3)
    (1200000.0, 0.8)
    """

    def callback(bytes_amount: int) -> None:
        if bytes_amount > 0:
            session.throttle(bytes_amount)

    return callback


class SourceChangedError(WedguardError):
    """The file changed while :func:`upload_file` sent it; the upload was aborted
    (nothing was completed, no object mixes two versions of the file)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} changed while it was uploaded; the upload was aborted")
        self.path = path


@attrs.frozen(slots=True)
class UploadResult:
    """What :func:`upload_file` did.

    Attributes:
        bucket: the bucket.
        key: the object's key.
        size: the object's size in bytes.
        etag: the completed object's ETag (as S3 returns it, quotes included).
        upload_id: the multipart upload id (empty for an empty file, sent in one PUT).
        parts: the parts the object is made of.
        uploaded_parts: parts sent by this call.
        sent_bytes: bytes sent by this call.
        reused_parts: parts already on the server from an earlier, interrupted call.
        resumed: whether this call continued an earlier upload.
    """

    bucket: str
    key: str
    size: int
    etag: str
    upload_id: str
    parts: int
    uploaded_parts: int
    reused_parts: int
    resumed: bool
    sent_bytes: int = 0


def state_path(
    path: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    state_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where :func:`upload_file` keeps the state of uploading ``path`` to ``bucket/key``.

    Next to the source (``<name>.<digest>.wedguard-upload.json``) unless ``state_dir``
    is given; the digest of the source's absolute path, bucket and key keeps uploads
    of equally named files apart.

    >>> state_path("/data/app.dump", "backups", "app.dump").name
    'app.dump.c04402a5dadb.wedguard-upload.json'
    """
    src = Path(os.path.abspath(os.fspath(path)))
    digest = hashlib.sha256(f"{src}\0{bucket}\0{key}".encode()).hexdigest()[:12]
    directory = src.parent if state_dir is None else Path(state_dir)
    return directory / f"{src.name}.{digest}.wedguard-upload.json"


def _check(
    path: str | os.PathLike[str], bucket: object, key: object, part_size: int | str
) -> tuple[Path, int]:
    if not isinstance(bucket, str) or not bucket:
        raise ConfigError("bucket", bucket, "a bucket name")
    if not isinstance(key, str) or not key:
        raise ConfigError("key", key, "an object key")
    try:
        size = part_size if isinstance(part_size, int) else parse_size(part_size)
    except ConfigError:
        raise ConfigError("part_size", part_size, "a size such as '8MiB'") from None
    if isinstance(size, bool) or not MIN_PART_SIZE <= size <= MAX_PART_SIZE:
        raise ConfigError("part_size", part_size, "between 5 MiB and 5 GiB (S3's limits)")
    return Path(os.fspath(path)), int(size)


def _read_state(file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or torn by hand: start again (the old upload is orphaned)
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        return None
    fields = {"bucket": str, "key": str, "size": int, "mtime_ns": int, "part_size": int}
    if not all(isinstance(data.get(k), t) for k, t in fields.items()):
        return None
    if not isinstance(data.get("upload_id"), str) or not isinstance(data.get("parts"), dict):
        return None
    return data


def _write_state(file: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``file`` atomically (temporary file, fsync, rename)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _read_part(f: Any, number: int, part_size: int, size: int) -> bytes:
    offset = (number - 1) * part_size
    f.seek(offset)
    data: bytes = f.read(min(part_size, size - offset))
    return data


def _call(
    guard: GuardLike,
    s: SessionLike,
    fn: Callable[..., Any],
    cost: int,
    kwargs: dict[str, Any],
    absent: tuple[str, ...] = (),
) -> Any:
    """One request as ``guard.protect`` runs it, in session ``s``: gate on the guard's
    breaker, pace ``cost`` bytes and one operation, call, count the outcome. An error
    whose code is in ``absent`` (the server answered: no such thing) is an answer, not
    a failure: the call returns None."""
    b = guard.breaker
    if b is not None and not b.allow():
        raise CircuitOpenError(b.name, float(b.retry_after))
    try:
        s.throttle(cost, ops=1)
    except BaseException:
        release = getattr(b, "release", None)
        if callable(release):
            release()  # stopped before the request: a trial's place is given back
        raise
    try:
        result = fn(**kwargs)
    except BaseException as exc:  # a trial call's place is given back whatever ended it
        if absent and _error_code(exc) in absent:
            result = None
        else:
            if b is not None:
                b.record_failure(exc)
            raise
    if b is not None:
        b.record_success()
    return result


@contextlib.contextmanager
def _session(guard: GuardLike, session: SessionLike | None, name: str) -> Iterator[SessionLike]:
    if session is not None:
        yield session
        return
    outer = guard.current_session()
    if outer is not None:
        yield outer
        return
    with guard.session(name) as s:
        yield s


def upload_file(
    guard: GuardLike,
    client: Any,
    path: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    part_size: int | str = 8 * 2**20,
    state_dir: str | os.PathLike[str] | None = None,
    session: SessionLike | None = None,
    extra_args: dict[str, Any] | None = None,
) -> UploadResult:
    """Upload ``path`` to ``s3://bucket/key`` in parts through ``guard``; resumable.

    Each part is paced by the session (``part_size`` bytes from the budget, one
    operation) and sent under the guard's circuit breaker (as by
    :meth:`Guard.protect`): failures count, and an open breaker raises
    :class:`~wedguard.CircuitOpenError` before anything is sent. Any error leaves the
    state file behind; calling again with the same arguments continues where the
    failed call stopped.

    Args:
        guard: the guard that paces the upload.
        client: a boto3 S3 client (``boto3.client("s3", ...)``).
        path: the file to upload.
        bucket: the destination bucket.
        key: the destination key.
        part_size: bytes per part (5 MiB to 5 GiB, at most 10,000 parts); an int or
            a size such as ``"16MiB"``. A resumed upload keeps the part size it began
            with.
        state_dir: where the state file goes (default: next to the source; see
            :func:`state_path`).
        session: the session to run in (default: the caller's active session of
            this guard, else a new one named ``s3:<key>``).
        extra_args: passed to ``create_multipart_upload`` (``ContentType``,
            ``StorageClass``, ``Metadata``...).

    Returns:
        An :class:`UploadResult`; the state file is gone.

    Raises:
        ConfigError: a bad bucket, key or part size, or a file too large for 10,000
            parts of ``part_size``.
        SourceChangedError: the file changed while it went up (the upload is
            aborted; the next call starts again).
        CircuitOpenError: the guard's breaker is open.
        EmergencyStop: the guard was stopped (the upload can be resumed).
        FileNotFoundError: no such source.
    """
    src, psize = _check(path, bucket, key, part_size)
    st = os.stat(src)
    size = st.st_size
    file = state_path(src, bucket, key, state_dir=state_dir)
    ident = {"bucket": bucket, "key": key, "size": size, "mtime_ns": st.st_mtime_ns}
    state = _saved_state(client, file, ident)
    if state is not None:
        psize = int(state["part_size"])  # a resumed upload keeps its part size
    count = max(1, -(-size // psize))
    if count > MAX_PARTS:
        raise ConfigError(
            "part_size", part_size, f"large enough for {size} bytes in {MAX_PARTS} parts"
        )

    with _session(guard, session, f"s3:{key}") as s:

        def call(
            fn: Callable[..., Any], cost: int, absent: tuple[str, ...] = (), **kwargs: Any
        ) -> Any:
            return _call(guard, s, fn, cost, kwargs, absent)

        if size == 0:
            out = call(client.put_object, 0, Bucket=bucket, Key=key, Body=b"", **(extra_args or {}))
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
            return UploadResult(bucket, key, 0, str(out.get("ETag", "")), "", 1, 1, 0, False)

        done: dict[int, str] = {}
        resumed = False
        if state is not None:
            found = _server_parts(call, client, state, src, psize, size)
            if found is None:
                state = None  # expired or aborted on the server: begin again
            else:
                done, resumed = found, True
        if state is None:
            state = _begin(call, client, file, ident, psize, extra_args)
        reused = len(done)
        state["parts"] = {str(n): e for n, e in sorted(done.items())}
        _write_state(file, state)
        sent, sent_bytes = _send_parts(call, client, file, state, src, done, count)
        out = _complete(call, client, file, state, src, done, count)
    with contextlib.suppress(FileNotFoundError):
        file.unlink()
    return UploadResult(
        bucket,
        key,
        size,
        str(out.get("ETag", "")),
        str(state["upload_id"]),
        count,
        sent,
        reused,
        resumed,
        sent_bytes,
    )


def _saved_state(client: Any, file: Path, ident: dict[str, Any]) -> dict[str, Any] | None:
    """The state ``file`` keeps of an earlier upload of this source to this place;
    None when there is none, or when the source changed since (its parts are then
    aborted: they are worthless)."""
    state = _read_state(file)
    if state is not None and any(state.get(k) != v for k, v in ident.items()):
        _abort_quietly(client, state)
        return None
    return state


def _complete(
    call: Callable[..., Any],
    client: Any,
    file: Path,
    state: dict[str, Any],
    src: Path,
    done: dict[int, str],
    count: int,
) -> Any:
    """Complete the upload of ``count`` parts, unless ``src`` changed while it went up
    (the parts may mix two versions of it): then abort it, forget it and raise
    :class:`SourceChangedError`."""
    now = os.stat(src)
    if (now.st_size, now.st_mtime_ns) != (state["size"], state["mtime_ns"]):
        _abort_quietly(client, state)
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
        raise SourceChangedError(str(src))
    return call(
        client.complete_multipart_upload,
        0,
        Bucket=state["bucket"],
        Key=state["key"],
        UploadId=str(state["upload_id"]),
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": done[n]} for n in range(1, count + 1)]
        },
    )


def _begin(
    call: Callable[..., Any],
    client: Any,
    file: Path,
    ident: dict[str, Any],
    psize: int,
    extra_args: dict[str, Any] | None,
) -> dict[str, Any]:
    """A new multipart upload for ``ident`` (bucket, key, size, mtime); its state,
    written to ``file`` before a part is sent."""
    out = call(
        client.create_multipart_upload,
        0,
        Bucket=ident["bucket"],
        Key=ident["key"],
        **(extra_args or {}),
    )
    state = {
        "version": _STATE_VERSION,
        **ident,
        "part_size": psize,
        "upload_id": out["UploadId"],
        "parts": {},
    }
    _write_state(file, state)
    return state


def _send_parts(
    call: Callable[..., Any],
    client: Any,
    file: Path,
    state: dict[str, Any],
    src: Path,
    done: dict[int, str],
    count: int,
) -> tuple[int, int]:
    """Send the parts of ``src`` not in ``done`` (each recorded in ``done`` and the
    state file once the server has it); the parts and bytes sent."""
    psize, size = int(state["part_size"]), int(state["size"])
    sent = sent_bytes = 0
    with open(src, "rb") as f:
        for number in range(1, count + 1):
            if number in done:
                continue
            body = _read_part(f, number, psize, size)
            out = call(
                client.upload_part,
                len(body),
                Bucket=state["bucket"],
                Key=state["key"],
                UploadId=str(state["upload_id"]),
                PartNumber=number,
                Body=body,
            )
            done[number] = str(out["ETag"])
            sent += 1
            sent_bytes += len(body)
            state["parts"][str(number)] = done[number]
            _write_state(file, state)
    return sent, sent_bytes


def _server_parts(
    call: Callable[..., Any],
    client: Any,
    state: dict[str, Any],
    src: Path,
    psize: int,
    size: int,
) -> dict[int, str] | None:
    """The parts of the state's upload that the server holds and that match the file;
    None when the server does not know the upload."""
    recorded: dict[str, str] = dict(state.get("parts") or {})
    found: dict[int, str] = {}
    marker = 0
    while True:
        page = call(
            client.list_parts,
            0,
            _NO_UPLOAD,
            Bucket=state["bucket"],
            Key=state["key"],
            UploadId=state["upload_id"],
            PartNumberMarker=marker,
        )
        if page is None:
            return None
        for part in page.get("Parts", []):
            number = int(part["PartNumber"])
            found[number] = str(part["ETag"])
        if not page.get("IsTruncated"):
            break
        marker = int(page["NextPartNumberMarker"])
    count = max(1, -(-size // psize))
    good: dict[int, str] = {}
    with open(src, "rb") as f:
        for number, etag in found.items():
            if not 1 <= number <= count:
                continue
            if recorded.get(str(number)) == etag:
                good[number] = etag
                continue
            # sent, but the answer never arrived: reuse it only if it holds these bytes
            local = hashlib.md5(_read_part(f, number, psize, size), usedforsecurity=False)
            if etag.strip('"') == local.hexdigest():
                good[number] = etag
    return good


def _abort_quietly(client: Any, state: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        client.abort_multipart_upload(
            Bucket=state["bucket"], Key=state["key"], UploadId=state["upload_id"]
        )


def abort_upload(
    client: Any,
    path: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    state_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Abort the unfinished upload of ``path`` to ``bucket/key`` and forget it.

    The server drops the parts it holds (``abort_multipart_upload``; an upload it no
    longer knows counts as aborted) and the state file is removed. Returns whether
    there was an unfinished upload.

    Raises:
        botocore.exceptions.ClientError: the server refused the abort (the state file
            stays, so it can be tried again).
    """
    file = state_path(path, bucket, key, state_dir=state_dir)
    state = _read_state(file)
    if state is None:
        return False
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=state["upload_id"])
    except Exception as exc:
        if _error_code(exc) not in ("NoSuchUpload", "404"):
            raise
    with contextlib.suppress(FileNotFoundError):
        file.unlink()
    return True


# -- a directory tree to a bucket: `wedguard copy DIR s3://bucket/prefix` ----------------

MTIME_KEY: Final = "wedguard-mtime-ns"
"""The object metadata that records the source's modification time (nanoseconds)."""


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``.

    >>> parse_url("s3://backups/photos/2026")
    ('backups', 'photos/2026')
    >>> parse_url("s3://backups")
    ('backups', '')
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigError("destination", url, "an S3 URL such as s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError("destination", url, "an S3 URL naming a bucket: s3://bucket/prefix")
    return bucket, prefix


def default_client() -> Any:
    """A boto3 S3 client configured the usual boto3 way (environment, ``~/.aws``):
    ``AWS_ENDPOINT_URL`` points it at an S3-compatible server.

    Raises:
        ImportError: boto3 is not installed (extra ``s3``).
    """
    import importlib

    return importlib.import_module("boto3").client("s3")


class S3CopyJob:
    """Uploads a file or a tree to ``s3://bucket/prefix`` under one session.

    The counterpart of the command's local copy, with the same counts for its report:
    an object whose size and recorded modification time (metadata
    ``wedguard-mtime-ns``) match the file is skipped; every other file goes up with
    :func:`upload_file` (resumable, state files in ``state_dir``). A file that fails
    is listed in :attr:`failed` and the copy goes on, until the guard itself ends it
    (its breaker opens, :class:`~wedguard.CircuitOpenError`; it is stopped; the
    session's cutoff or hold limit is reached: every :class:`~wedguard.WedguardError`
    but :class:`SourceChangedError` ends the copy); symbolic links, FIFOs and devices
    are left out (:attr:`special`).
    """

    def __init__(
        self,
        session: SessionLike,
        guard: GuardLike,
        client: Any,
        *,
        state_dir: str | os.PathLike[str],
        part_size: int | str = 8 * 2**20,
    ) -> None:
        self.session = session
        self.guard = guard
        self.client = client
        self.state_dir = Path(state_dir)
        self.part_size = part_size
        self.copied = 0
        self.skipped = 0
        self.failed: list[str] = []
        self.special: list[str] = []
        self.bytes = 0
        self.current = ""
        self.bucket = ""

    def plan(self, src: Path, url: str) -> Iterator[tuple[Path, str]]:
        """(file, key) pairs: a tree's files under the prefix by their relative path;
        one file at the prefix itself, or under it when the prefix ends in ``/``."""
        bucket, prefix = parse_url(url)
        self.bucket = bucket
        if not src.is_dir():
            yield src, (prefix + src.name if not prefix or prefix.endswith("/") else prefix)
            return
        base = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        for root, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel = Path(root).relative_to(src)
            for name in sorted(filenames):
                path = Path(root) / name
                if name.endswith(".wedguard-upload.json") or name.startswith(".wedguard-tmp."):
                    continue
                yield path, base + (rel / name).as_posix()

    def copy_file(self, src: Path, key: str) -> None:
        """Upload one file unless the object already matches it."""
        import stat

        st = src.lstat()
        if not stat.S_ISREG(st.st_mode):
            self.special.append(str(src))
            return
        self.current = str(src)
        mtime = str(st.st_mtime_ns)
        try:
            if self._unchanged(key, st.st_size, mtime):
                self.skipped += 1
                return
            result = upload_file(
                self.guard,
                self.client,
                src,
                self.bucket,
                key,
                part_size=self.part_size,
                state_dir=self.state_dir,
                session=self.session,
                extra_args={"Metadata": {MTIME_KEY: mtime}},
            )
        except Exception as exc:
            if isinstance(exc, WedguardError) and not isinstance(exc, SourceChangedError):
                raise  # the guard's answer (a stop, an open breaker, a cutoff), not the file's
            self.failed.append(f"{src}: {exc}")
            return
        self.copied += 1
        self.bytes += result.sent_bytes

    def _unchanged(self, key: str, size: int, mtime: str) -> bool:
        head = _call(
            self.guard,
            self.session,
            self.client.head_object,
            0,
            {"Bucket": self.bucket, "Key": key},
            ("404", "NoSuchKey", "NotFound"),
        )
        if head is None:
            return False
        metadata = head.get("Metadata") or {}
        return bool(head.get("ContentLength") == size and metadata.get(MTIME_KEY) == mtime)
