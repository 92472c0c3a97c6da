"""Run a decoder in a child process, so a crash, a hang or a memory blow-up costs one file.

Native decoders (FFmpeg through PyAV, libsndfile, pdfium, Pillow's C plugins) can segfault,
loop forever or allocate without bound on hostile input, and no ``try``/``except`` recovers from
that. :func:`isolated` runs a generator function in a child process with an address-space limit
and a timeout for each item, streams the items back one at a time, and turns every failure into
a :class:`~mmembed.errors.ChunkingError` that names the file; the caller's process survives.

How the children are made, and why:

- ``multiprocessing``'s ``spawn`` and ``forkserver`` methods re-import the caller's ``__main__``
  in every child. A script that calls a chunker without an ``if __name__ == "__main__":`` guard
  would then recurse, and every file would pay for importing the caller's program (0.2-0.5 s
  measured). ``fork`` from the caller is unsafe once it has threads (FAISS's OpenMP pool,
  BLAS, an event loop).
- So the sandbox starts one small helper process of its own (a clean interpreter that has
  imported only mmembed, with single-threaded BLAS), once per caller process. For each job the
  helper forks a worker: the helper has no threads, so forking it is safe and takes
  milliseconds. The worker lowers its limits and runs the generator; the helper reaps it and
  reports how it ended (a signal, an exit status). On Linux a worker dies with its helper, and
  the helper exits (killing its workers) when the caller's end of its socket closes.
- The caller talks to the worker over a socket pair: the worker computes one item, sends it,
  and waits to be asked for the next, so neither side ever holds more than one item. With
  ``read_ahead`` the caller asks for the next as soon as an item arrives, so the worker makes it
  while the caller uses the last one (decoding and the caller's own work overlap).

Items and arguments cross the process boundary by pickling in memory, never on disk.
"""

from __future__ import annotations

import atexit
import contextlib
import copyreg
import ctypes
import gc
import importlib
import io
import json
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any, TypeVar

from mmembed.errors import ChunkingError, ConfigurationError, MMEmbedError

__all__ = ["isolated"]

T = TypeVar("T")

_MB = 1024 * 1024
#: How long a worker that was asked to stop may take to clean up before it is killed.
_GRACE_SECONDS = 2.0
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1

# Messages to the caller: from the helper
_PID = b"P"
_DIED = b"X"
# ... and from the worker.
_ITEM = b"I"
_DONE = b"D"
_ERROR = b"E"
# Requests from the caller to the worker.
_NEXT = b"N"
_STOP = b"S"

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_FD = "MMEMBED_SANDBOX_FD"
_ENV_PATH = "MMEMBED_SANDBOX_PATH"
_HELPER_CODE = (
    "import json, os, sys; "
    f"sys.path[:] = json.loads(os.environ.pop({_ENV_PATH!r})); "
    "from mmembed.chunkers._sandbox import _helper_main; _helper_main()"
)


# --------------------------------------------------------------------------- serialisation


def _mappingproxy(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(d)


def _reduce_mappingproxy(m: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (_mappingproxy, (dict(m),))


class _Pickler(pickle.Pickler):
    """A pickler that also carries ``MappingProxyType`` (``Chunk.metadata``).

    The reducer lives in this pickler's own dispatch table, so the caller's global ``copyreg``
    registry is left alone.
    """

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = _reduce_mappingproxy


def _dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _loads(data: bytes | memoryview) -> Any:
    # In-memory IPC from the parent, which the child trusts; never read from disk.
    return pickle.loads(data)  # noqa: S301


_SAFE_BUILTINS = frozenset(
    {
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
        "range", "set", "slice", "str", "tuple",
    }
)  # fmt: skip
_SAFE_PATHS = frozenset({"Path", "PosixPath", "PurePath", "PurePosixPath", "WindowsPath"})


class _ChildUnpickler(pickle.Unpickler):
    """Reads what a worker sends back: only data and mmembed's own classes.

    A worker decodes hostile files; were its decoder ever subverted, it could send a pickle
    that names any callable. Refusing every global but plain data types, paths and mmembed
    classes keeps that from becoming code execution in the caller's process.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if module == "pathlib" and name in _SAFE_PATHS:
            return super().find_class(module, name)
        if module == __name__ and name == "_mappingproxy":
            return _mappingproxy
        if module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"):
            return super().find_class(module, name)
        if module == "mmembed" or module.startswith("mmembed."):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        if module == "builtins":
            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, BaseException):
                return found
        raise pickle.UnpicklingError(f"a sandbox worker sent a forbidden object: {module}.{name}")


def _loads_from_child(data: bytes | memoryview) -> Any:
    """Load a worker's message, allowing only data types and mmembed classes."""
    try:
        return _ChildUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise ChunkingError(
            f"the decoder process sent back something it must not ({exc}); the file is "
            "probably hostile, skip it"
        ) from None


# --------------------------------------------------------------------------- helper process


class _Helper:
    """The caller's handle on its helper process (started lazily, restarted if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        # Decoders need no BLAS threads, and a helper with threads could not fork safely.
        for var in _THREAD_VARS:
            env[var] = "1"
        env[_ENV_FD] = str(theirs.fileno())
        env[_ENV_PATH] = json.dumps([os.path.abspath(p) if p == "" else p for p in sys.path])
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _HELPER_CODE],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            theirs.close()
        self._ctrl = ours

    def _stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        if self._proc is not None:
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def new_job(self, preload: Sequence[str]) -> socket.socket:
        """Ask the helper for a fresh worker; returns our end of the socket to it."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = json.dumps(list(preload)).encode()
        try:
            with self._lock:
                for attempt in range(2):
                    if self._proc is None or self._proc.poll() is not None:
                        self._stop()
                        self._start()
                    assert self._ctrl is not None
                    try:
                        socket.send_fds(self._ctrl, [request], [theirs.fileno()])
                        break
                    except OSError:
                        self._stop()
                        if attempt:
                            raise
        except OSError as exc:
            ours.close()
            raise ChunkingError(
                f"could not start an isolated decoder process ({exc}); pass isolate=False to "
                "decode in this process instead"
            ) from exc
        finally:
            theirs.close()
        return ours

    def close(self) -> None:
        with self._lock:
            self._stop()

    def forget(self) -> None:
        """In a child forked from the caller: the helper belongs to the parent; start afresh."""
        self._lock = threading.Lock()
        if self._ctrl is not None:
            self._ctrl.close()  # only this process's copy; the parent's stays open
        self._ctrl = None
        self._proc = None


_helper = _Helper()
atexit.register(_helper.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_helper.forget)


def _helper_main() -> None:
    """The helper: fork one worker per request, reap it, and report how it ended."""
    ctrl = socket.socket(fileno=int(os.environ.pop(_ENV_FD)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A child's exit wakes the select() below through this pipe, so reaping is immediate.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    jobs: dict[int, int] = {}  # worker pid -> our copy of its socket, to report its death
    preloaded: set[str] = set()
    try:
        while True:
            _reap(jobs)
            try:
                ready, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            if ctrl.fileno() not in ready:
                continue
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 65536, 1)
            if not msg:
                return  # the caller closed its end or exited
            if not fds:
                continue
            _preload(json.loads(msg), preloaded)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    ctrl.close()
                    for fd in (wake_r, wake_w, *jobs.values()):
                        os.close(fd)
                    _become_worker(os.getppid())
                    _worker(Connection(fds[0]))
                except BaseException:
                    code = 1
                os._exit(code)
            jobs[pid] = fds[0]
            # The worker waits for its payload, which the caller sends only after this message.
            try:
                Connection(os.dup(fds[0])).send_bytes(_PID + str(pid).encode())
            except OSError:
                _kill(pid)
    except OSError:
        return
    finally:
        # The caller is gone: nobody will read what the workers make.
        for pid in jobs:
            _kill(pid)
        for pid in list(jobs):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _preload(modules: list[str], preloaded: set[str]) -> None:
    """Import modules in the helper, so each forked worker gets them for free."""
    fresh = [m for m in modules if m not in preloaded]
    for module in fresh:
        preloaded.add(module)
        try:
            importlib.import_module(module)
        except Exception:  # noqa: S112 - the worker will import (and report) it
            continue
    if fresh:
        # Objects that exist now are never collected in the workers, so the collector does not
        # touch (and copy) the pages they share with this process.
        gc.freeze()


def _reap(jobs: dict[int, int]) -> None:
    """Reap ended workers and tell their callers how each one ended, if not cleanly."""
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = jobs.pop(pid, None)
        if fd is None:
            continue
        report: tuple[str, int] | None = None
        if os.WIFSIGNALED(status):
            report = ("signal", os.WTERMSIG(status))
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            report = ("exit", os.WEXITSTATUS(status))
        conn = Connection(fd)
        if report is not None:
            with contextlib.suppress(OSError):
                conn.send_bytes(_DIED + _dumps(report))
        conn.close()


def _become_worker(helper_pid: int) -> None:
    """Detach a freshly forked worker from the helper's signals and terminal."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # keep terminal signals (Ctrl-C, Ctrl-Z) meant for the caller away
    if sys.platform.startswith("linux"):
        # Die with the helper, even if it is killed: a hung worker must not outlive its caller.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:
            os._exit(1)


def _adopt(cwd: str, environ: dict[str, str]) -> None:
    """Make the worker's directory and environment the caller's."""
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    keep = {var: os.environ[var] for var in _THREAD_VARS if var in os.environ}
    os.environ.clear()
    os.environ.update(environ)
    os.environ.update(keep)  # the worker stays single-threaded for BLAS, as it was forked


def _limit_worker(memory_mb: int | None) -> None:
    """Resource limits applied inside the worker before any decoding starts."""
    import resource

    # A crashing decoder must not litter the working directory with core files.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb is not None:
        cap = memory_mb * _MB
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _describe_exception(exc: BaseException) -> bytes:
    """Serialise an exception raised in the worker for the caller."""
    tb = "".join(traceback.format_exception(exc)[-8:])
    if isinstance(exc, MMEmbedError):
        try:
            return _dumps(("mmembed", _dumps(exc), tb))
        except Exception:  # an unpicklable attribute: fall back to class and message
            cls = type(exc)
            return _dumps(("mmembed-name", (cls.__module__, cls.__qualname__, str(exc)), tb))
    if isinstance(exc, MemoryError):
        return _dumps(("memory", str(exc), tb))
    return _dumps(("other", f"{type(exc).__name__}: {exc}", tb))


def _worker(conn: Connection) -> None:
    """Run the generator, answering one request at a time."""
    try:
        fn, args, memory_mb, cwd, environ = _loads(conn.recv_bytes())
    except (EOFError, OSError):
        return  # the caller gave up before sending the job
    try:
        # The helper started long ago: take the caller's current directory (relative paths)
        # and environment (TMPDIR, ...) as they are now.
        _adopt(cwd, environ)
        _limit_worker(memory_mb)
        gen = iter(fn(*args))
    except BaseException as exc:
        conn.send_bytes(_ERROR + _describe_exception(exc))
        return
    try:
        while True:
            if conn.recv_bytes() == _STOP:
                close = getattr(gen, "close", None)
                if close is not None:
                    close()
                return
            try:
                item = next(gen)
            except StopIteration:
                conn.send_bytes(_DONE)
                return
            data = _dumps(item)
            del item  # at most one item alive in the worker, too
            conn.send_bytes(_ITEM + data)
            del data
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the caller went away; nothing left to report to
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send_bytes(_ERROR + _describe_exception(exc))


# --------------------------------------------------------------------------- caller side


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _rebuild_error(info: Any, name: str, memory_mb: int | None) -> MMEmbedError:
    """The exception the caller raises for an error report from the worker."""
    kind, detail, tb = info
    note = "raised in the isolated decoder process:\n" + tb
    if kind == "mmembed":
        try:
            exc = _loads_from_child(detail)
        except Exception:
            exc = None
        if isinstance(exc, MMEmbedError):
            exc.add_note(note)
            return exc
        kind, detail = "other", "an mmembed error that could not be passed back"
    if kind == "mmembed-name":
        module, qualname, message = detail
        cls: Any = None
        if str(module).startswith("mmembed."):
            try:
                cls = getattr(importlib.import_module(module), qualname)
            except (ImportError, AttributeError):
                cls = None
        if isinstance(cls, type) and issubclass(cls, MMEmbedError):
            try:
                err: MMEmbedError = cls(message)
            except Exception:
                err = ChunkingError(f"{name}: {message}")
            err.add_note(note)
            return err
        detail = message
    if kind == "memory":
        limit = f" of {memory_mb} MB" if memory_mb is not None else ""
        err = ChunkingError(
            f"{name}: decoding needed more than the memory limit{limit}; the file is probably "
            "corrupt or a decompression bomb (raise memory_mb if it is genuine)"
        )
    else:
        err = ChunkingError(
            f"{name}: could not be decoded ({detail}); the file is probably corrupt or not of "
            "the type it claims to be"
        )
    err.add_note(note)
    return err


def _death_error(report: Any, name: str, memory_mb: int | None) -> ChunkingError:
    kind, code = report
    if kind == "signal":
        how = f"was killed by {_signal_name(code)}"
        if code == signal.SIGKILL and memory_mb is not None:
            how += f" (perhaps for memory; the limit is {memory_mb} MB)"
    else:
        how = f"exited with status {code}"
    return ChunkingError(
        f"{name}: the decoder process {how}; the file is probably corrupt or hostile, skip it "
        "or re-encode it"
    )


def _wait_for_eof(conn: Connection, seconds: float) -> bool:
    """Drain ``conn`` until the other side has closed it; ``False`` if that took too long."""
    deadline = time.monotonic() + seconds
    try:
        while conn.poll(max(0.0, deadline - time.monotonic())):
            conn.recv_bytes()
    except (EOFError, OSError):
        return True
    return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _run_isolated(
    payload: bytes,
    timeout: float,
    memory_mb: int | None,
    name: str,
    preload: Sequence[str],
    read_ahead: bool,
) -> Iterator[Any]:
    sock = _helper.new_job(preload)
    conn = Connection(os.dup(sock.fileno()))
    sock.close()
    pid: int | None = None
    ended = False  # the worker reported its end (done, error or death)
    hung = False  # the worker missed its deadline: no point asking it politely
    try:
        if not conn.poll(timeout):
            raise ChunkingError(
                f"{name}: the isolated decoder process did not start within {timeout:g} s"
            )
        try:
            first = conn.recv_bytes()
        except (EOFError, OSError):
            first = b""
        if first[:1] != _PID:
            ended = True
            raise ChunkingError(f"{name}: the isolated decoder process did not start properly")
        pid = int(first[1:])
        conn.send_bytes(payload)
        del payload
        asked = False  # the next item is already being made
        while True:
            # If the worker died, sending fails; the poll below says how it ended.
            if not asked:
                with contextlib.suppress(OSError):
                    conn.send_bytes(_NEXT)
            asked = False
            if not conn.poll(timeout):
                hung = True
                raise ChunkingError(
                    f"{name}: decoding took longer than {timeout:g} s for one chunk and was "
                    "stopped; the file may be hostile or corrupt (raise timeout if it is "
                    "genuinely slow)"
                )
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                ended = True
                raise ChunkingError(
                    f"{name}: the decoder process ended without a word; the file is probably "
                    "corrupt or hostile, skip it or re-encode it"
                ) from None
            tag = message[:1]
            if tag == _ITEM:
                item = _loads_from_child(memoryview(message)[1:])
                del message
                if read_ahead:  # the worker makes the next while this one is used
                    with contextlib.suppress(OSError):
                        conn.send_bytes(_NEXT)
                    asked = True
                yield item
                del item
            elif tag == _DONE:
                ended = True
                return
            elif tag == _ERROR:
                ended = True
                raise _rebuild_error(_loads_from_child(memoryview(message)[1:]), name, memory_mb)
            elif tag == _DIED:
                ended = True
                raise _death_error(_loads_from_child(memoryview(message)[1:]), name, memory_mb)
            else:
                ended = True
                raise ChunkingError(f"{name}: garbled message from the decoder process")
    finally:
        try:
            if pid is not None:
                if hung:
                    _kill(pid)
                elif not ended:
                    # The consumer stopped early: let the generator clean up, then insist.
                    with contextlib.suppress(OSError):
                        conn.send_bytes(_STOP)
                    # Once the worker has exited its end of the socket is closed; the
                    # supervisor reaps it, and the helper reaps the supervisor.
                    if not _wait_for_eof(conn, _GRACE_SECONDS):
                        _kill(pid)
        finally:
            conn.close()


def _run_inline(fn: Callable[..., Iterator[T]], args: tuple[Any, ...], name: str) -> Iterator[T]:
    try:
        yield from fn(*args)
    except MMEmbedError:
        raise
    except MemoryError as exc:
        raise ChunkingError(
            f"{name}: ran out of memory while decoding; the file is probably corrupt or a "
            "decompression bomb"
        ) from exc
    except Exception as exc:
        raise ChunkingError(
            f"{name}: could not be decoded ({type(exc).__name__}: {exc}); the file is probably "
            "corrupt or not of the type it claims to be"
        ) from exc


def isolated(
    fn: Callable[..., Iterator[T]],
    *args: Any,
    timeout: float = 60.0,
    memory_mb: int | None = 2048,
    name: str = "",
    isolate: bool = True,
    preload: Sequence[str] = (),
    read_ahead: bool = False,
) -> Iterator[T]:
    """Run the generator function ``fn(*args)`` in a child process and stream its items.

    Nothing starts until the first item is asked for. The child computes one item, sends it, and
    waits to be asked for the next, so neither side holds more than one item at a time (with
    ``read_ahead``, the child makes the next while the consumer uses the last: one item ahead).
    If the consumer stops early (``break``, ``close()``, garbage collection), the child is
    stopped.

    Args:
        fn: a generator function defined at the top level of an importable module (it is
            pickled by reference).
        *args: its arguments; they must pickle (paths, bytes and plain values do).
        timeout: seconds allowed for each item (start-up included for the first).
        memory_mb: the child's address-space limit (``RLIMIT_AS``) in MiB; ``None`` for none.
        name: what is being decoded, for messages (usually the file name).
        isolate: ``False`` runs ``fn`` in this process instead: faster, with the same error
            translation, but no protection against crashes, hangs or memory blow-ups.
        preload: modules to import in the long-lived helper before forking (for example
            ``("pypdf",)``), so each child does not pay for importing them again.
        read_ahead: let the child make the next item while the consumer uses the last (one
            item ahead), so decoding overlaps the consumer's own work.

    Yields:
        The items ``fn`` yields, in order.

    Raises:
        ChunkingError: the child crashed, hung, ran out of memory or raised a non-mmembed error;
            the message names ``name`` and the reason.
        MMEmbedError: an mmembed error raised by ``fn`` is re-raised as the same class with the
            same message and attributes.
        ConfigurationError: ``fn`` or its arguments cannot be sent to another process.
    """
    if timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}")
    if memory_mb is not None and memory_mb <= 0:
        raise ConfigurationError(f"memory_mb must be positive or None, got {memory_mb}")
    label = name or getattr(fn, "__qualname__", "decoder")
    if not isolate or not hasattr(os, "fork"):
        # Without fork (Windows) there is no cheap isolation; decode here with the same errors.
        return _run_inline(fn, args, label)
    module = getattr(fn, "__module__", None)
    if module in (None, "__main__") or "<locals>" in getattr(fn, "__qualname__", "<locals>"):
        raise ConfigurationError(
            f"{label}: {getattr(fn, '__qualname__', fn)!r} cannot run in a separate process: "
            "it must be a function defined at the top level of an importable module"
        )
    try:
        payload = _dumps((fn, args, memory_mb, os.getcwd(), dict(os.environ)))
    except Exception as exc:
        raise ConfigurationError(
            f"{label}: the arguments of {getattr(fn, '__qualname__', fn)} cannot be sent to a "
            f"separate process ({type(exc).__name__}: {exc}); pass paths, bytes and plain values"
        ) from exc
    return _run_isolated(payload, timeout, memory_mb, label, (str(module), *preload), read_ahead)
