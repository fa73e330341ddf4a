"""The live control plane: steer a running guard over a Unix socket.

Opt in with ``Guard(control_socket="/run/backup/wedguard.sock")`` (or
``guard.serve_control(path)``). The socket is created mode 0600, so only its owner
(and root) may connect, and the peers are checked on both ends: the server answers only
clients running as its own user or root, and :func:`send_command` talks only to a
server running as the caller's own user (on Linux by the kernel's ``SO_PEERCRED``
credentials of the connected socket, elsewhere by the socket file's owner), so a socket
that someone else planted cannot pretend that a guard stopped. In the manner
of gh-ost's interactive commands, one request is one line of text::

    $ echo status | socat - UNIX-CONNECT:/run/backup/wedguard.sock
    $ echo 'rate=5MB/s' | nc -U /run/backup/wedguard.sock

========================  ==============================================================
``status``                the decision, its reasons, rates, sessions and children
``throttle [reason]``     hold every session and child (they wait; nothing fails)
``no-throttle``           lift ``throttle`` (a ``stop`` stays in force)
``rate=<rate>``           set the guard's configured rate live (``rate=off`` unlimited)
``stop [reason]``         emergency stop: sessions raise, children are paused
``resume``                lift ``stop`` and ``throttle``
``panic [reason]``        stop, and end every child (SIGTERM, then SIGKILL)
``help``                  the list of commands
========================  ==============================================================

Replies are text: ``ok: ...`` or ``error: ...`` lines, and a few lines for ``status``.
For tools, prefix any request with ``json`` (``json status``, ``json rate=5MB/s``; also
``status json``) to get one line of JSON with an ``ok`` member. A connection may carry
several requests; each is answered in order, and the server closes the connection when
the client has finished sending.

Requests are bounded (4 KiB by default: a longer line gets an error and the connection
is closed), unknown commands get an ``error:`` line, and a client that connects and
hangs (sends nothing, or does not read) is cut off after ``client_timeout``. The server
is one thread that never blocks on a client, so no client can hold the guard.

:func:`send_command` is the client side the ``wedguard`` command line uses.

Example::

    >>> import os, tempfile, wedguard as wg
    >>> path = os.path.join(tempfile.mkdtemp(), "wg.sock")
    >>> guard = wg.Guard(rate="50MB/s", calendar=None, sources=[], sinks=[],
    ...                  control_socket=path)
    >>> oct(os.stat(path).st_mode & 0o777)
    '0o600'
    >>> send_command(path, "rate=10MB/s")
    'ok: rate 10 MB/s'
    >>> send_command(path, "stop maintenance")
    'ok: stopped (maintenance)'
    >>> guard.decision().stopped
    True
    >>> guard.close()  # True: every event reached the sinks
    True

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import selectors
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from wedguard._checks import NOT_A_DIRECTORY, names_a_directory
from wedguard._fs import euid, owner
from wedguard.errors import ConfigError
from wedguard.units import format_rate, format_size

if TYPE_CHECKING:
    from wedguard.runtime.guard import Guard

__all__ = ["COMMANDS", "ControlServer", "UntrustedPeerError", "check_peer", "send_command"]

COMMANDS: Final = {
    "status": "the decision, its reasons, rates, sessions and children",
    "throttle [reason]": "hold every session and child until no-throttle or resume",
    "no-throttle": "lift throttle (a stop stays in force)",
    "rate=<rate>": "set the guard's configured rate live, e.g. rate=5MB/s or rate=off",
    "stop [reason]": "emergency stop: sessions raise EmergencyStop, children are paused",
    "resume": "lift stop and throttle",
    "panic [reason]": "stop, and end every child process",
    "help": "this list",
}
"""The commands the control socket understands, with a line of help each."""

_MAX_PATH: Final = 107  # sun_path holds 108 bytes with the terminating NUL
_UCRED: Final = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid


class UntrustedPeerError(PermissionError):
    """The process at the other end of a control socket runs as another user.

    Raised by :func:`send_command` before anything is sent: a socket planted by
    someone else (in a shared directory, or named in a status file they wrote) must
    not receive our commands nor answer for a guard.

    Attributes:
        path: the control socket.
        uid: the user id the other end runs as.
        expected: the user id it had to run as.

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str, uid: int, expected: int) -> None:
        self.path = path
        self.uid = uid
        self.expected = expected
        super().__init__(
            f"{path}: the control socket is served by {owner(uid)}, not by {owner(expected)}: "
            "not trusted, nothing was sent"
        )


def check_peer(path: str | os.PathLike[str], uid: int | None, expected: int | None) -> None:
    """Refuse a control-socket peer running as ``uid`` when ``expected`` is required.

    ``None`` for either means unknown (no user ids on this platform): nothing to check.

    >>> check_peer("/run/wg.sock", 1000, 1000)
    >>> check_peer("/run/wg.sock", 65534, 1000)
    Traceback (most recent call last):
    ...
    wedguard.runtime.control_socket.UntrustedPeerError: /run/wg.sock: the control socket is served by uid 65534...

    Raises:
        UntrustedPeerError: ``uid`` is not ``expected``.
    """
    if uid is not None and expected is not None and uid != expected:
        raise UntrustedPeerError(os.fspath(path), uid, expected)


def _peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end (Linux ``SO_PEERCRED``), or None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - not Linux
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return int(uid)


def _num(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


class _Conn:
    __slots__ = ("buf", "closing", "deadline", "out", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.deadline = deadline
        self.closing = False


class ControlServer:
    """Serves the control commands for ``guard`` on the Unix socket ``path``.

    Listening starts in the constructor (a thread of its own, ``wedguard-control``);
    :meth:`close` stops it and removes the socket file. A stale socket file left by a
    guard that died is replaced; a path on which another guard still listens, or that
    is not a socket, is a :class:`~wedguard.ConfigError`.

    Args:
        guard: the guard to steer.
        path: where the socket lives (its directory must exist).
        mode: the socket file's permissions (default 0o600: owner only).
        max_request: the longest request line, in bytes (default 4096).
        client_timeout: seconds a client may stay idle (not sending a full request,
            or not reading a reply) before it is cut off (default 5).
        max_clients: connections served at once; more are refused with an error line.

    Example::

        server = ControlServer(guard, "/run/backup/wedguard.sock")
        ...
        server.close()

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        guard: Guard,
        path: str | os.PathLike[str],
        *,
        mode: int = 0o600,
        max_request: int = 4096,
        client_timeout: float = 5.0,
        max_clients: int = 16,
    ) -> None:
        if not callable(getattr(guard, "decision", None)):
            raise ConfigError("guard", guard, "a wedguard.Guard")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError("control_socket", path, "a filesystem path")
        text = os.fspath(path)
        if isinstance(text, str) and names_a_directory(text):
            raise ConfigError("control_socket", path, NOT_A_DIRECTORY)
        self._path = Path(path)
        if len(os.fsencode(self._path)) > _MAX_PATH:
            raise ConfigError(
                "control_socket", path, f"a path of at most {_MAX_PATH} bytes (a Unix socket)"
            )
        if not self._path.parent.is_dir():
            raise ConfigError("control_socket", path, "a path in an existing directory")
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 < mode <= 0o777:
            raise ConfigError("mode", mode, "permission bits such as 0o600")
        if isinstance(max_request, bool) or not isinstance(max_request, int):
            raise ConfigError("max_request", max_request, "bytes, 64..1048576")
        if not 64 <= max_request <= 1 << 20:
            raise ConfigError("max_request", max_request, "bytes, 64..1048576")
        if isinstance(client_timeout, bool) or not isinstance(client_timeout, (int, float)):
            raise ConfigError("client_timeout", client_timeout, "seconds > 0")
        if not 0 < client_timeout < math.inf:
            raise ConfigError("client_timeout", client_timeout, "seconds > 0")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ConfigError("max_clients", max_clients, "a whole number >= 1")
        self._guard = guard
        self._mode = mode
        self._max_request = max_request
        self._client_timeout = float(client_timeout)
        self._max_clients = max_clients
        self._conns: dict[socket.socket, _Conn] = {}
        self._closed = False
        self._clear_stale()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(os.fspath(self._path))
            # no client can connect before listen(), so the mode is set in time
            os.chmod(self._path, mode)
            self._sock.listen(16)
            self._sock.setblocking(False)
        except OSError as exc:
            self._sock.close()
            raise ConfigError("control_socket", path, f"a path we may bind ({exc})") from exc
        self._inode = os.stat(self._path).st_ino
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="wedguard-control", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self._path

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError("control_socket", os.fspath(self._path), "a path that is not a file")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(os.fspath(self._path))
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()  # stale: nobody listens
            return
        finally:
            probe.close()
        raise ConfigError(
            "control_socket", os.fspath(self._path), "a path no running guard listens on"
        )

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed:
            now = time.monotonic()
            deadline = min((c.deadline for c in self._conns.values()), default=now + 1.0)
            try:
                events = self._sel.select(max(0.0, min(1.0, deadline - now)))
            except OSError:  # pragma: no cover - the selector was closed under us
                break
            for key, mask in events:
                sock = key.fileobj
                if sock is self._sock:
                    self._accept()
                elif sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    assert isinstance(sock, socket.socket)
                    conn = self._conns.get(sock)
                    if conn is None:
                        continue
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if mask & selectors.EVENT_WRITE and sock in self._conns:
                        self._flush(conn)
            now = time.monotonic()
            for conn in [c for c in self._conns.values() if c.deadline <= now]:
                self._timeout(conn)
        for conn in list(self._conns.values()):
            self._drop(conn)

    def _accept(self) -> None:
        try:
            sock, _ = self._sock.accept()
        except OSError:
            return
        sock.setblocking(False)
        if len(self._conns) >= 4 * self._max_clients:
            sock.close()  # a flood: not even an error line
            return
        refusal = b""
        if not self._peer_allowed(sock):
            refusal = b"error: permission denied\n"
        elif len(self._conns) >= self._max_clients:
            refusal = b"error: too many clients; try again\n"
        conn = _Conn(sock, time.monotonic() + self._client_timeout)
        self._conns[sock] = conn
        self._sel.register(sock, selectors.EVENT_READ, None)
        if refusal:
            # answer, ignore whatever the client sends, close when it is done (or in 1 s)
            conn.out += refusal
            conn.closing = True
            conn.deadline = time.monotonic() + 1.0
            self._flush(conn)

    @staticmethod
    def _peer_allowed(sock: socket.socket) -> bool:
        """A client may steer the guard when it runs as our own user or as root."""
        try:
            uid = _peer_uid(sock)
        except OSError:  # pragma: no cover
            return True
        if uid is None:  # pragma: no cover - not Linux: the 0600 mode guards
            return True
        return uid in (os.geteuid(), 0)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if conn.closing:
            if not data:
                self._drop(conn)
            return
        if not data:
            if conn.buf.strip():
                self._answer(conn, bytes(conn.buf))
            conn.buf.clear()
            conn.closing = True
            self._flush(conn)
            return
        conn.buf += data
        while not conn.closing:
            nl = conn.buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(conn.buf[:nl])
            del conn.buf[: nl + 1]
            if len(line) > self._max_request:
                self._too_long(conn)
                break
            self._answer(conn, line)
        if not conn.closing and len(conn.buf) > self._max_request:
            self._too_long(conn)
        self._flush(conn)

    def _too_long(self, conn: _Conn) -> None:
        conn.buf.clear()
        conn.out += f"error: request too long (at most {self._max_request} bytes)\n".encode()
        conn.closing = True

    def _answer(self, conn: _Conn, line: bytes) -> None:
        conn.deadline = time.monotonic() + self._client_timeout
        try:
            reply = self.handle(line.decode("utf-8", errors="replace"))
        except Exception as exc:  # pragma: no cover - a command never kills the server
            reply = f"error: {type(exc).__name__}: {exc}"
        if reply:
            conn.out += reply.encode() + b"\n"

    def _flush(self, conn: _Conn) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
                del conn.out[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self._drop(conn)
                return
        if not conn.out and conn.closing:
            # half-close and let the client finish: closing with its bytes unread
            # would reset the connection before it reads our reply
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            conn.deadline = min(conn.deadline, time.monotonic() + 1.0)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(conn.sock, events, None)

    def _timeout(self, conn: _Conn) -> None:
        if not conn.closing:
            with contextlib.suppress(OSError):
                conn.sock.send(b"error: timed out waiting for the client\n")
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        conn.sock.close()

    # -- the commands -------------------------------------------------------------------------

    def handle(self, line: str) -> str:
        """The reply to one request line (what the socket sends back, without the newline)."""
        text = line.strip()
        as_json = False
        if text.lower().startswith("json ") or text.lower() == "json":
            as_json, text = True, text[4:].strip()
        assignment = re.fullmatch(r"([A-Za-z][\w-]*)\s*=\s*(.*)", text, flags=re.S)
        if assignment is not None:
            command, arg = assignment[1], assignment[2].strip()
        else:
            command, _, arg = text.partition(" ")
            arg = arg.strip()
        command = command.lower()
        if command == "status" and arg.lower() == "json":
            as_json, arg = True, ""
        try:
            result = self._dispatch(command, arg, text)
        except ConfigError as exc:
            result = {"ok": False, "error": str(exc)}
        if as_json:
            return json.dumps({"command": command or "", **result}, default=str)
        if not result["ok"]:
            return f"error: {result['error']}"
        if command == "status":
            return self._status_text(result)
        if command == "help":
            return "\n".join(f"{k:20} {v}" for k, v in COMMANDS.items())
        return f"ok: {result['message']}"

    def _dispatch(self, command: str, arg: str, text: str) -> dict[str, Any]:
        g = self._guard
        if command == "status":
            return {"ok": True, **self.status()}
        if command == "help":
            return {"ok": True, "commands": COMMANDS}
        if command == "throttle":
            g.hold(arg or "throttled from the control socket")
            return {"ok": True, "message": "throttled" + (f" ({arg})" if arg else "")}
        if command == "no-throttle":
            g.release_hold()
            return {"ok": True, "message": "throttle lifted"}
        if command == "rate":
            if not arg:
                raise ConfigError("rate", arg, "a rate such as rate=5MB/s or rate=off")
            g.set_rate(arg)
            return {"ok": True, "message": f"rate {format_rate(g.rate)}", "rate": _num(g.rate)}
        if command == "stop":
            g.stop(arg or "stopped from the control socket")
            return {"ok": True, "message": "stopped" + (f" ({arg})" if arg else "")}
        if command == "resume":
            g.resume()
            return {"ok": True, "message": "resumed"}
        if command == "panic":
            from wedguard.io.process import guarded_children

            reason = arg or "panic from the control socket"
            g.stop(f"panic: {reason}")
            children = guarded_children(g)
            for child in children:
                child.abort(f"panic: {reason}")
            return {
                "ok": True,
                "message": f"stopped, {len(children)} child process(es) ended",
                "aborted": [c.pid for c in children],
            }
        if not command:
            return {"ok": False, "error": "empty request; try help"}
        shown = text if len(text) <= 60 else text[:57] + "..."
        return {"ok": False, "error": f"unknown command {shown!r}; try help"}

    def status(self) -> dict[str, Any]:
        """What ``status`` reports, as a JSON-serialisable mapping."""
        from wedguard.io.process import guarded_children

        g = self._guard
        d = g.decision()
        children = guarded_children(g)
        reasons = list(d.reasons)
        for child in children:
            reasons.extend(child.reasons())
        core = g._host
        with core.lock:  # sessions, and protected calls running outside one
            names = core.slots.names()
        return {
            "decision": d.to_dict(),
            "reasons": reasons,
            "rates": {
                "configured": _num(g.rate),
                "allowed": _num(d.rate),
                "needed": None if d.needed_rate is None else _num(d.needed_rate),
            },
            "sessions": {
                "active": g.active_sessions,
                "waiting": g.waiting_sessions,
                "names": names,
            },
            "children": [c.status() for c in children],
        }

    @staticmethod
    def _status_text(status: dict[str, Any]) -> str:
        d = status["decision"]
        rates = status["rates"]

        def rate(v: Any) -> str:
            return format_rate(float(v))  # float("inf"): "unlimited"

        state = "stopped" if d["stopped"] else "on hold" if d["on_hold"] else "running"
        lines = [
            f"state: {state}" + (f" ({d['stop_reason']})" if d["stop_reason"] else ""),
            f"decision: {d['level']}/{d['verdict']} at {rate(rates['allowed'])} "
            f"(configured {rate(rates['configured'])})",
            "reasons:",
            *(f"  - {r}" for r in status["reasons"]),
        ]
        s = status["sessions"]
        names = ", ".join(s["names"])
        lines.append(
            f"sessions: {s['active']} active, {s['waiting']} waiting"
            + (f" ({names})" if names else "")
        )
        lines.append(f"children: {len(status['children'])}")
        lines.extend(
            f"  - {c['name']} (pid {c['pid']}): {c['state']}, "
            f"I/O {format_size(c['io_bytes'])}, CPU {c['cpu_seconds']:.1f} s"
            for c in status["children"]
        )
        return "\n".join(lines)

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and remove the socket file (if it is still ours)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._sel.close()
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()
        with contextlib.suppress(OSError):
            if os.stat(self._path).st_ino == self._inode:
                self._path.unlink()

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._conns)} clients"
        return f"ControlServer(path={os.fspath(self._path)!r}, {state})"


def send_command(
    path: str | os.PathLike[str],
    line: str,
    timeout: float = 5.0,
    *,
    peer_uid: int | None = None,
) -> str:
    """Send one request line to the control socket at ``path``; return the reply text.

    The reply is returned without its final newline (``status`` replies have several
    lines). Prefix the line with ``json`` for a JSON reply.

    Only a server running as ``peer_uid`` is trusted: by default the caller's own
    (effective) user id, also for root, since a guard is steered by the user who
    runs it. Someone else's socket gets nothing and raises
    :class:`UntrustedPeerError`. On Linux the server's credentials come from the
    connected socket (``SO_PEERCRED``); elsewhere the socket file's owner stands in.

    Raises:
        ConfigError: ``line`` holds a newline, or ``timeout`` is not > 0.
        UntrustedPeerError: the server runs as another user (a ``PermissionError``).
        OSError: nobody listens at ``path`` (``FileNotFoundError``,
            ``ConnectionRefusedError``), or the user may not connect.
        TimeoutError: no complete reply within ``timeout`` seconds.

    Example::

        reply = send_command("/run/backup/wedguard.sock", "json status")
    """
    if not isinstance(line, str) or "\n" in line or "\r" in line:
        raise ConfigError("line", line, "one line of text without newlines")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError("timeout", timeout, "seconds > 0")
    if peer_uid is not None and (isinstance(peer_uid, bool) or not isinstance(peer_uid, int)):
        raise ConfigError("peer_uid", peer_uid, "a user id, or None for your own")
    expected = peer_uid if peer_uid is not None else euid()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        uid = _peer_uid(sock)
        if uid is None:  # pragma: no cover - not Linux: the socket file's owner
            uid = os.stat(path).st_uid
        check_peer(path, uid, expected)
        sock.sendall(line.encode() + b"\n")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from {os.fspath(path)} within {timeout:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError as exc:
                raise TimeoutError(f"no reply from {os.fspath(path)} within {timeout:g} s") from exc
            except ConnectionResetError:
                if not chunks:
                    raise
                break  # the server replied, then refused the rest of the request
            if not data:
                break
            chunks.append(data)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\n") else text
