"""The trusted side of one job process: spawn it, talk to it, watch it, end it.

A `Session` lives in the worker. It owns the job process's pipes: it sends call requests,
reads replies (decoded by the strict codec), drains and caps stdout/stderr, enforces the
deadline it is given, and learns from the zygote when the process has ended. Anything that
ends the process early (exit, signal, deadline, output flood) becomes a sticky `fatal`
status, raised as `ProcessEnded` - a BaseException, so test code's ``except Exception``
can't swallow it - and every later test of the job is failed with it.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import select
import signal
import socket
import time
from typing import Any

from . import codec

# Largest value a program may return, encoded. Decoding costs up to ~40 bytes of worker
# memory per byte of a hostile reply (one small object per few bytes), so this bounds the
# worker's memory too; honest benchmark values are far smaller.
MAX_REPLY = 4 << 20


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class ProcessEnded(BaseException):
    """The job process is gone (or must be): carries the status and an error description."""

    def __init__(self, status: str, error_type: str, message: str, line: int | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message, self.line = status, error_type, message, line


class SandboxLimitation(Exception):
    """A trusted value that can't be sent to the program (e.g. a lambda as an argument)."""


class ProgramError(Exception):
    """An exception raised inside the program whose type has no builtin counterpart."""


class ZygoteClient:
    """The worker's handle on its zygote."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        self.spawned = 0
        self.cleaned = 0  # sequence number of the last job the zygote finished cleaning

    def recv(self) -> tuple:
        return self._note(self.sock.recv(4096))

    def _note(self, data: bytes) -> tuple:
        if not data:
            raise ConnectionError("the zygote process ended")
        message = pickle.loads(data)
        if message[0] == "done":
            self.cleaned = max(self.cleaned, message[1])
        return message

    def drain(self) -> None:
        """Drop messages about earlier jobs so the socket buffer never fills up."""
        while True:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self._note(data)

    def wait_clean(self, timeout: float = 30.0) -> None:
        """Block until the zygote has cleaned up after every job process spawned so far:
        all their processes are dead and reaped and their directories removed."""
        deadline = time.monotonic() + timeout
        while self.cleaned < self.spawned:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise ConnectionError("the zygote did not finish its cleanup")
            self._note(self.sock.recv(4096))

    def spawn(self, payload: dict, stdin_text: str | bytes | None = None) -> Session:
        self.drain()
        if isinstance(stdin_text, str):
            try:
                stdin_text = stdin_text.encode()
            except UnicodeEncodeError as e:  # before any descriptor exists: nothing leaks
                raise SandboxLimitation(f"a stdio test's input is not valid text: {e}") from None
        memfd = os.memfd_create("payload")
        stdin = self.devnull
        try:
            if stdin_text is not None:
                stdin = os.memfd_create("stdin")
                os.write(stdin, stdin_text)
                os.lseek(stdin, 0, os.SEEK_SET)
            os.write(memfd, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            theirs = [memfd, stdin, req_r, resp_w, out_w, err_w]
            socket.send_fds(self.sock, [b"spawn"], theirs)
        finally:
            os.close(memfd)
            if stdin != self.devnull:
                os.close(stdin)
        for fd in (req_r, resp_w, out_w, err_w):
            os.close(fd)
        self.spawned += 1
        return Session(self, self.spawned, req_w, resp_r, out_r, err_r)


class Session:
    def __init__(self, zygote: ZygoteClient, seq: int, req: int, resp: int, out: int, err: int):
        self.zygote = zygote
        self.seq = seq
        self.req, self.resp, self.out, self.err = req, resp, out, err
        for fd in (req, resp, out, err):
            os.set_blocking(fd, False)
        self.frames = codec.FrameBuffer(MAX_REPLY)
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.output_limit = 1 << 20
        self.deadline = float("inf")
        self.deadline_status = "timeout"
        self.fatal: ProcessEnded | None = None
        self.exit_status: int | None = None  # raw wait status once the process ended
        self.max_rss_kb = 0
        self.memory_limit = 2 << 30
        self.closed = False
        self.program_names: frozenset[str] = frozenset()
        self.program_values: frozenset[str] = frozenset()  # non-callable program globals
        self.program_lines = 0  # lines of Job.program (bounds the error lines it may claim)
        self.open = {resp, out, err}

    # ------------------------------------------------------------------ events

    def _on_zygote(self) -> None:
        kind, seq, status, rss = self.zygote.recv()
        if seq == self.seq and self.exit_status is None:
            self.exit_status, self.max_rss_kb = status, rss

    def _drain(self, fd: int) -> bool:
        """Read what is available on ``fd``; return False once it hit EOF."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                self.open.discard(fd)
                return False
            if fd == self.resp:
                try:
                    self.frames.feed(data)
                except codec.DecodeError as e:  # only raised for oversized replies
                    self.end(
                        "output_exceeded",
                        "OutputLimitExceeded",
                        f"a returned value is too large: {e}",
                    )
            else:
                buf = self.stdout if fd == self.out else self.stderr
                buf += data
                if len(self.stdout) + len(self.stderr) > self.output_limit:
                    self.end(
                        "output_exceeded",
                        "OutputLimitExceeded",
                        f"the program wrote more than {self.output_limit} bytes",
                    )

    def end(self, status: str, error_type: str, message: str, line: int | None = None):
        """Record a fatal condition and raise it."""
        if self.fatal is None:
            self.fatal = ProcessEnded(status, error_type, message, line)
        raise self.fatal

    def _ended_by_exit(self) -> None:
        """The process is gone without the reply we wait for: say why."""
        status = self.exit_status
        if status is None:
            self.end("runtime_error", "EarlyExit", "the program closed its result channel")
        code = os.waitstatus_to_exitcode(status)
        if code >= 0:
            self.end(
                "runtime_error",
                "EarlyExit",
                f"the program exited with code {code} before finishing the tests",
            )
        sig = -code
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        if sig == signal.SIGXCPU:
            self.end("timeout", "Timeout", "CPU time limit exceeded")
        if self.max_rss_kb * 1024 >= 0.75 * self.memory_limit:  # near RLIMIT_AS, or OOM-killed
            self.end("memory_exceeded", "MemoryError", f"killed by {name} at the memory limit")
        self.end("runtime_error", name, f"the program was killed by signal {name}")

    def _await_exit_status(self, patience: float = 0.5) -> None:
        """The reply channel closed: give the zygote a moment to report how the process
        ended, so the verdict can name the reason (exit code, signal)."""
        end = min(self.deadline, time.monotonic() + patience)
        while self.exit_status is None:
            timeout = end - time.monotonic()
            if timeout <= 0:
                return
            ready, _, _ = select.select([self.zygote.sock], [], [], timeout)
            if ready:
                self._on_zygote()

    def exit_code(self) -> int:
        """Exit code of an ended process; raises ProcessEnded if a signal killed it."""
        code = os.waitstatus_to_exitcode(self.exit_status)
        if code < 0:
            self._ended_by_exit()
        return code

    def wait_message(self) -> list:
        """Block until the process sends a complete message; raise ProcessEnded otherwise."""
        if self.fatal is not None:
            raise self.fatal
        while True:
            frame = self.pop_frame()
            if frame is not None:
                return self._parse(frame)
            if self.resp not in self.open and self.exit_status is None:
                self._await_exit_status()
            if self.exit_status is not None or self.resp not in self.open:
                for fd in list(self.open):
                    self._drain(fd)
                frame = self.pop_frame()
                if frame is not None:
                    return self._parse(frame)
                self._ended_by_exit()
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                self.end(self.deadline_status, "Timeout", "the time limit was exceeded")
            fds = list(self.open) + [self.zygote.sock]
            ready, _, _ = select.select(fds, [], [], timeout)
            for fd in ready:
                if fd is self.zygote.sock:
                    self._on_zygote()
                else:
                    self._drain(fd)

    def pop_frame(self) -> bytes | None:
        try:
            return self.frames.pop()
        except codec.DecodeError as e:  # only raised for oversized replies
            self.end(
                "output_exceeded", "OutputLimitExceeded", f"a returned value is too large: {e}"
            )

    def _parse(self, frame: bytes) -> list:
        try:
            message = codec.loads(frame)
            if type(message) is not list or not message:
                raise codec.DecodeError("reply is not a list")
        except codec.DecodeError as e:
            self.end("runtime_error", "ProtocolError", str(e))
        return message

    def wait_exit(self) -> None:
        """Block until the process has ended (script jobs), collecting its output."""
        while self.exit_status is None or self.open:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                self.end(self.deadline_status, "Timeout", "the time limit was exceeded")
            fds = list(self.open) + ([self.zygote.sock] if self.exit_status is None else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            for fd in ready:
                if fd is self.zygote.sock:
                    self._on_zygote()
                else:
                    self._drain(fd)
            if self.exit_status is not None:
                for fd in list(self.open):
                    self._drain(fd)
                self.open.clear()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.req, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self.wait_message()  # raises with the reason the process ended
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                self.end(self.deadline_status, "Timeout", "the time limit was exceeded")
            ready, _, _ = select.select(
                list(self.open) + [self.zygote.sock], [self.req], [], timeout
            )
            for fd in ready:
                if fd is self.zygote.sock:
                    self._on_zygote()
                else:
                    self._drain(fd)
            if self.exit_status is not None:
                self.wait_message()

    # ------------------------------------------------------------------ calls

    def call(self, name: str | int, args: tuple, kwargs: dict, kind: str = "call") -> Any:
        """Call the program's function ``name`` (or, with kind="get", read the program's
        global ``name``; for "callh", "iter", "next", ``name`` is a kept object's handle);
        return the value, strictly decoded."""
        request = kind
        if self.fatal is not None:
            raise self.fatal
        if time.monotonic() >= self.deadline:  # a test looping over fast calls ends here too
            self.end(self.deadline_status, "Timeout", "the time limit was exceeded")
        try:
            wire = [codec.encode_value(_refs(args)), codec.encode_value(_refs(kwargs))]
        except codec.Unencodable as e:
            if "deeper" in str(e):  # program values decode only as deep as they re-encode
                self.end("runtime_error", "ValueTooDeep", f"cannot send a value back: {e}")
            raise SandboxLimitation(f"cannot send a test argument to the program: {e}") from None
        self._write(codec.frame_bytes(codec.dumps([kind, name, *wire])))
        reply = self.wait_message()
        kind = reply[0]
        if kind == "value" and len(reply) == 2:
            try:
                return codec.decode_value(reply[1], self._object, self.deadline, refs=False)
            except codec.DecodeTimeout:
                self.end(self.deadline_status, "Timeout", "the time limit was exceeded")
            except codec.DecodeError as e:
                self.end("runtime_error", "ProtocolError", f"malformed reply: {e}")
        if kind == "raise" and len(reply) == 2 and type(reply[1]) is dict:
            raise _program_exception(self, reply[1], stop_iteration=request == "next")
        self.end("runtime_error", "ProtocolError", f"unexpected reply {str(kind)[:50]!r}")

    def _object(self, handle: int, type_name: str) -> ProgramObject:
        return ProgramObject(self, handle, type_name)

    def close(self) -> None:
        """Ask the zygote to kill whatever is left of the job and remove its directory
        (`ZygoteClient.wait_clean` waits for it)."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.req, self.resp, self.out, self.err):
            os.close(fd)
        self.zygote.sock.send(b"cleanup")


class Remote:
    """A program name seen from the tests: calling it calls the program's object."""

    __slots__ = ("_session", "_name")

    def __init__(self, session: Session, name: str):
        self._session, self._name = session, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<program function {self._name}>"


def _refs(value: Any) -> Any:
    t = type(value)
    if t is Remote:
        return codec.Ref(value._name)
    if t is list or t is tuple:
        return t(_refs(v) for v in value)
    if t is dict:
        return {k: _refs(v) for k, v in value.items()}
    return value


_EXITS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")
# Exceptions that trusted code treats as control flow: StopIteration from a program call
# would end ``all(map(f, xs))`` early (a pass); re-raised as a plain error instead, except
# where it is the protocol (the ``next`` of an iterator the program returned).
_CONTROL_FLOW = ("StopIteration", "StopAsyncIteration")


def claimed_labels(session: Session, info: Any) -> dict:
    """What the program says about an exception it raised, reduced to labels it may choose
    without harm: an identifier as the type, a message, a line of the program (else None).
    Never used to pick a status."""
    info = info if type(info) is dict else {}
    etype = str(info.get("type"))[:100]
    if not _IDENTIFIER.fullmatch(etype):
        etype = "ProgramError"
    message = str(info.get("message"))[:2000]
    line = info.get("line")
    if type(line) is not int or not 1 <= line <= session.program_lines:
        line = None
    return {"type": etype, "message": message, "line": line}


def _program_exception(session: Session, info: dict, stop_iteration: bool = False):
    """Re-create an exception the program raised, tagged with where it came from."""
    labels = claimed_labels(session, info)
    etype, message, line = labels["type"], labels["message"], labels["line"]
    if etype in _EXITS:
        session.end("runtime_error", etype, f"the program raised {etype} during a test", line)
    if stop_iteration and etype == "StopIteration":
        return StopIteration()
    cls = getattr(builtins, etype, None)
    exc: BaseException
    try:
        if etype in _CONTROL_FLOW or not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError
        exc = cls(message)
    except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs 5 arguments
        exc = ProgramError(f"{etype}: {message}")
    exc.rlfb_remote = labels  # type: ignore[attr-defined]
    return exc


class ProgramObject(codec.Handle):
    """A program value that could not cross as a plain value (a function, a generator, a
    user object): equal to nothing, but a test may call it or iterate over it, and each
    call or step runs in the job process like a call of the program's function."""

    __slots__ = ("_session",)

    def __init__(self, session: Session, handle: int, type_name: str):
        super().__init__(handle, type_name)
        self._session = session

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self.id, args, kwargs, kind="callh")

    def __iter__(self) -> ProgramObject:
        it = self._session.call(self.id, (), {}, kind="iter")
        if not isinstance(it, ProgramObject):
            raise TypeError(f"iter() of a {self.type_name} returned a plain value")
        return it

    def __next__(self) -> Any:
        return self._session.call(self.id, (), {}, kind="next")
