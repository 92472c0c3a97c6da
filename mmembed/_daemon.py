"""A resident search helper: later ``mmembed search`` runs answer from a warm process.

Loading a model (torch and its weights) or the Gemini SDK takes seconds; a search takes
milliseconds. So the first ``mmembed search`` on an index starts a helper that keeps the index
and its embedder loaded and answers on a Unix socket inside the index directory
(``search.sock``, mode 0600), the way ``dmypy`` or a Gradle daemon work. It exits after
``MMEMBED_HELPER_IDLE`` seconds without a question (300), or at once when its socket or index
directory goes away. ``MMEMBED_HELPER=off`` turns it off.

Never a wrong answer: every failure of the helper falls back to searching in the command's own
process.

- A stale socket (a helper that crashed) refuses the connection: a new helper is started; it
  takes the kernel lock ``search.lock`` (released when a process dies), so it alone may remove
  the old socket, and two commands starting helpers at once start one.
- A socket path that is a symlink, not a socket, or another user's is not used; the helper
  answers only peers of its own user (``SO_PEERCRED``).
- A helper from another mmembed (version, install, Python, or edited source files) or another
  environment (API key, endpoint, offline switches) answers "mismatch" and exits; the command
  searches itself.
- An index changed by another writer: each search replays the catalog's change log, and the
  helper reopens the index when ``config.json`` or ``store.json`` was replaced; a search during
  which a snapshot was written is run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["IDLE_SECONDS", "SOCKET_NAME", "ask", "enabled", "serve"]

PROTOCOL = 1
SOCKET_NAME = "search.sock"
LOCK_NAME = "search.lock"
#: Seconds a helper waits for a question before it exits.
IDLE_SECONDS = 300.0
# the longest path a Unix socket address takes on every platform (108 bytes on Linux)
_MAX_SOCKET_PATH = 100
# a helper loading torch and a model needs a few seconds; past this the command searches itself
_START_SECONDS = 60.0
# a search by the helper: the embedding service's own retry budget plus the round trips
_REPLY_SECONDS = 120.0
# environment variables that change what a search answers or whom it asks
_ENV_PREFIXES = ("GEMINI_", "GOOGLE_", "HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_")
_ENV_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def enabled() -> bool:
    """Whether searches may use a helper (``MMEMBED_HELPER`` is not ``off``/``0``/``no``)."""
    return os.environ.get("MMEMBED_HELPER", "on").strip().lower() not in ("0", "off", "no", "false")


def _idle_seconds() -> float:
    try:
        return max(float(os.environ.get("MMEMBED_HELPER_IDLE", IDLE_SECONDS)), 0.5)
    except ValueError:
        return IDLE_SECONDS


def identity() -> str:
    """This mmembed: where it is installed, the Python running it, and its source files (their
    number, sizes and times: another version, or an edited checkout, differs in them)."""
    package = Path(__file__).resolve().parent
    stats = [p.stat() for p in package.rglob("*.py")]
    files = f"{len(stats)}:{sum(s.st_size for s in stats)}:{max(s.st_mtime_ns for s in stats)}"
    parts = [str(PROTOCOL), str(package), sys.executable, files]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def environment() -> str:
    """A digest of the environment a search depends on (never the values themselves)."""
    names = sorted(n for n in os.environ if n.startswith(_ENV_PREFIXES) or n.upper() in _ENV_NAMES)
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}\0{os.environ[name]}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# -- the command's side --------------------------------------------------------------------------


class Unsafe(Exception):
    """The socket path is not a socket of this user's: never connect, never start a helper."""


def ask(index_dir: str | os.PathLike[str], request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The helper's reply to ``request`` (starting a helper when none runs), or ``None``: then
    the caller searches in its own process.

    Raises:
        Unsafe: ``search.sock`` is a symlink, not a socket, or owned by another user.
    """
    path = Path(index_dir).absolute() / SOCKET_NAME
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        return None
    message = {
        "protocol": PROTOCOL,
        "identity": identity(),
        "environment": environment(),
        "cwd": os.getcwd(),
        "request": dict(request),
    }
    reply = _exchange(path, message)
    if reply is None and _start(path.parent):
        reply = _exchange(path, message)
    if reply is None or "mismatch" in reply:
        return None
    return reply


def _check_socket(path: Path) -> bool:
    """False when there is nothing at ``path``; raises :class:`Unsafe` for anything not ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a socket"
        raise Unsafe(f"{path} is {kind}; not used")
    if st.st_uid != os.geteuid():
        raise Unsafe(f"{path} belongs to another user; not used")
    return True


def _peer_uid(sock: socket.socket) -> int | None:
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:  # not Linux: the socket's mode 0600 and owner check stand alone
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def _exchange(path: Path, message: Mapping[str, Any]) -> dict[str, Any] | None:
    if not _check_socket(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except OSError:  # refused (a crashed helper's socket), gone, or busy: start another
            return None
        uid = _peer_uid(sock)
        if uid is not None and uid != os.geteuid():
            raise Unsafe(f"{path} is served by another user; not used")
        sock.settimeout(_REPLY_SECONDS)
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = _read_line(sock)
        except OSError:
            return None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _read_line(sock: socket.socket, limit: int = 64 << 20) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        block = sock.recv(1 << 16)
        if not block:
            break
        chunks.append(block)
        size += len(block)
        if block.endswith(b"\n") or size > limit:
            break
    return b"".join(chunks)


def _start(index_dir: Path) -> bool:
    """Start a helper for ``index_dir`` and wait until it listens (or gives up)."""
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmembed._daemon", str(index_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
    except OSError:
        return False
    assert proc.stdout is not None
    try:
        # the first process forks the helper and exits; the helper says "ready" on the pipe
        ready, _, _ = select.select([proc.stdout], [], [], _START_SECONDS)
        line = proc.stdout.readline() if ready else b""
    finally:
        proc.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return line.strip() in (b"ready", b"running")


# -- the helper's side ---------------------------------------------------------------------------


class _Warm:
    """The open index and its embedder, reopened when the index's snapshot files change."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self.index: Any = None
        self.signature: tuple[Any, ...] | None = None
        self._open()
        self._warm_up()

    def _signature(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in ("config.json", "store.json"):
            try:
                st = os.stat(self.dir / name)
            except FileNotFoundError:
                out.append(None)
                continue
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _open(self) -> None:
        from mmembed._search_cli import open_for_search

        signature = self._signature()
        embedder = None
        if self.index is not None:
            embedder = self.index.embedder
            self.index.close()  # the catalog; the embedder stays warm for the reopened index
        self.index = open_for_search(self.dir, embedder=embedder)
        self.signature = signature

    def _warm_up(self) -> None:
        from mmembed.content import Task

        embedder = self.index.embedder
        # a local model loads now (and runs once); a service is only connected, never called
        if self.index.info()["embedder"].get("kind") in ("local", "static"):
            embedder.embed(["warm up"], task=Task.QUERY)

    def search(self, request: Mapping[str, Any]) -> Any:
        from mmembed._search_cli import run

        for _ in range(3):
            before = self._signature()
            if before != self.signature:
                self._open()
            outcome = run(self.index, request, index_dir=str(request.get("index_dir", self.dir)))
            if self._signature() == before:
                return outcome
        raise RuntimeError("the index kept changing during the search")


def _handle(conn: socket.socket, warm: _Warm, me: str, env: str) -> bool:
    """Answer one connection; True when the helper should stop."""
    from mmembed._search_cli import SearchFailure
    from mmembed.errors import MMEmbedError

    uid = _peer_uid(conn)
    if uid is not None and uid != os.geteuid():
        return False
    conn.settimeout(10.0)
    try:
        message = json.loads(_read_line(conn))
    except (OSError, ValueError):
        return False
    stop = False
    reply: dict[str, Any]
    if not isinstance(message, dict) or message.get("protocol") != PROTOCOL:
        reply, stop = {"mismatch": "protocol"}, True
    elif message.get("identity") != me:
        reply, stop = {"mismatch": "another mmembed"}, True
    elif message.get("environment") != env:
        reply, stop = {"mismatch": "another environment"}, True
    else:
        try:
            os.chdir(str(message["cwd"]))
            reply = {"ok": warm.search(message["request"]).to_dict()}
        except SearchFailure as exc:
            reply = {"error": str(exc), "code": exc.code}
        except MMEmbedError as exc:
            from mmembed.cli import _code_for

            reply = {"error": str(exc), "code": int(_code_for(exc))}
        except Exception as exc:  # anything else: the command searches itself
            reply, stop = {"mismatch": f"helper failed: {type(exc).__name__}"}, True
    with contextlib.suppress(OSError):
        conn.settimeout(10.0)
        conn.sendall(json.dumps(reply).encode() + b"\n")
    return stop


def _same_socket(path: Path, inode: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and st.st_ino == inode


@contextlib.contextmanager
def _helper_lock(index_dir: Path) -> Iterator[bool]:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(index_dir / LOCK_NAME, flags, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def serve(index_dir: Path, *, announce: Any = None) -> int:
    """Run a helper for ``index_dir`` until it is idle; ``announce`` is told ``"ready"`` when
    it listens (``"running"`` when another helper already serves the index)."""
    index_dir = index_dir.absolute()
    path = index_dir / SOCKET_NAME
    with _helper_lock(index_dir) as mine:
        if not mine:
            _say(announce, "running")
            return 0
        try:
            if _check_socket(path):
                os.unlink(path)  # we hold the lock: whoever made it is dead
        except Unsafe:
            _say(announce, "unsafe")
            return 1
        try:
            warm = _Warm(index_dir)
        except Exception as exc:
            _say(announce, f"failed: {type(exc).__name__}")
            return 1
        me, env = identity(), environment()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            server.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        inode = os.lstat(path).st_ino
        server.listen(16)
        server.settimeout(1.0)
        _say(announce, "ready")
        idle = _idle_seconds()
        last = time.monotonic()
        try:
            while _same_socket(path, inode):
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    if time.monotonic() - last > idle:
                        break
                    continue
                with conn:
                    stop = _handle(conn, warm, me, env)
                last = time.monotonic()
                if stop:
                    break
        finally:
            server.close()
            if _same_socket(path, inode):
                with contextlib.suppress(OSError):
                    os.unlink(path)
    return 0


def _say(announce: Any, word: str) -> None:
    if announce is not None:
        announce(word)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mmembed._daemon INDEX_DIR", file=sys.stderr)
        return 2
    index_dir = Path(argv[0])
    # fork once so the helper is nobody's child: the command that started it may exit at once
    if os.fork():
        os._exit(0)
    os.setsid()
    out = sys.stdout

    def announce(word: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            out.write(word + "\n")
            out.flush()
            # the command reads one line; the helper keeps no pipe open behind it
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)

    return serve(index_dir, announce=announce)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
