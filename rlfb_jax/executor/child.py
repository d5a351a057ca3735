"""The untrusted side: what runs inside a job process, after the sandbox is in place.

Everything here shares a process with the program, so nothing here is trusted: the program
may rewrite any of it. It only ever *reports values* (function results, exception
descriptions, a readiness marker) over fd 4; the trusted test runner (`runner.py`) decides
every verdict from those values and from what it observes itself (exit status, output).
A forged message can at most claim that the program returned some value, which is what an
honest program would do too; it can't claim that a test passed.

File descriptors: 0 stdin, 1 stdout, 2 stderr, 3 requests from the runner, 4 replies.
"""

from __future__ import annotations

import builtins
import os
import sys
from typing import Any

from . import codec

REQUEST_FD = 3
REPLY_FD = 4
PROGRAM_FILE = "<program>"
MAX_MESSAGE = 64 << 20


def _send(message: Any) -> None:
    codec.write_frame(REPLY_FD, codec.dumps(message))


def exception_info(exc: BaseException, where: str = "program") -> dict:
    """Type, message and the last line of the program the traceback passes through."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == PROGRAM_FILE:
        line = exc.lineno
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    try:
        message = str(exc)[:2000]
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not stop the report
        message = "<unprintable>"
    return {"type": type(exc).__name__, "message": message, "line": line, "where": where}


def _compile(source: str, filename: str, where: str) -> Any:
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        info = exception_info(e, where)
        if isinstance(e, SyntaxError):
            info["line"] = e.lineno if where == "program" else None
        # A ValueError here is a source compile() rejects outright (null bytes, surrogates).
        bad_source = isinstance(e, (SyntaxError, ValueError))
        _send(["syntax_error" if bad_source else "error", info])
        return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def run_functions(payload: dict) -> int:
    """Define the program (assert / call jobs), then answer call requests until EOF."""
    codes = []
    for source, filename, where in (
        (payload["setup"], "<setup>", "setup"),
        (payload["program"], PROGRAM_FILE, "program"),
        (payload["test_setup"], "<test_setup>", "test_setup"),
    ):
        code = _compile(source, filename, where)
        if code is None:
            return 0
        codes.append((code, where))
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for code, where in codes:
        try:
            exec(code, namespace)
        except BaseException as e:  # noqa: BLE001 - SystemExit etc. are reported, not obeyed
            _flush()
            _send(["error", exception_info(e, where)])
            return 0
    _flush()
    _send(["ready", [[k, callable(v)] for k, v in namespace.items() if type(k) is str]])
    return serve_calls(namespace, REQUEST_FD, REPLY_FD)


def serve_calls(namespace: dict[str, Any], request_fd: int, reply_fd: int) -> int:
    """Answer call requests against ``namespace`` until the request channel closes."""
    objects: dict[int, Any] = {}

    def send(message: Any) -> None:
        codec.write_frame(reply_fd, codec.dumps(message))

    def resolve(v: Any) -> Any:
        if type(v) is codec.Ref:
            return namespace[v.name]
        if type(v) is codec.Handle:
            return objects[v.id]
        if type(v) in (list, tuple):
            return type(v)(resolve(x) for x in v)
        if type(v) is dict:
            return {k: resolve(x) for k, x in v.items()}
        return v

    while True:
        frame = codec.read_frame(request_fd, MAX_MESSAGE)
        if frame is None:
            return 0
        kind, name, args, kwargs = codec.loads(frame)
        try:
            if kind == "get":  # a test reads one of the program's values
                result = namespace[name]
            else:
                fn = namespace[name]
                args = resolve(codec.decode_value(args, {}))
                kwargs = resolve(codec.decode_value(kwargs, {}))
                result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            _flush()
            info = exception_info(e)
            if isinstance(e, KeyError) and e.args == (name,) and name not in namespace:
                info.update(type="NameError", message=f"name {name!r} is not defined")
            send(["raise", info])
            continue
        _flush()
        try:
            send(["value", codec.encode_value(result)])
        except (codec.Unencodable, RecursionError):
            objects[len(objects)] = result
            send(["handle", len(objects) - 1, type(result).__name__])


def run_script(payload: dict) -> int:
    """Run the program as a script (stdin/stdout jobs); return its exit code."""
    code = _compile(payload["program"], PROGRAM_FILE, "program")
    if code is None:
        return 0
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as e:
        if e.code is None or e.code is True or e.code is False:
            status = int(bool(e.code))
        elif type(e.code) is int:
            status = e.code & 0xFF
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:  # noqa: BLE001
        _flush()
        try:
            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != PROGRAM_FILE:
                tb = tb.tb_next  # show the program's frames, not the harness's
            import traceback  # imported here: keeps the zygote (and every fork of it) lean

            traceback.print_exception(type(e), e, tb)
        except BaseException:  # noqa: BLE001
            pass
        _send(["error", exception_info(e)])
        status = 1
    _flush()
    return status


def main(payload: dict) -> None:
    """Entry point in the forked job process; never returns."""
    status = 1
    try:
        if payload["mode"] == "script":
            status = run_script(payload)
        else:
            status = run_functions(payload)
    except BaseException:  # noqa: BLE001 - harness failure: the runner sees a dead process
        status = 70
    finally:
        _flush()
        os._exit(status)
