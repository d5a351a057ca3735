"""The untrusted side: what runs inside a job process, after the sandbox is in place.

Everything here shares a process with the program, so nothing here is trusted once the
program has started: the program may rewrite any of it. Before that, the first frame it
sends on fd 4 (``compile_error``, ``setup_error`` or ``started``) is written while only our
code has run, so the trusted side believes it about compilation and setup. Every later frame
only *reports values* (function results, exception descriptions, a readiness marker); the
trusted test runner (`runner.py`) decides every verdict from those values and from what it
observes itself (exit status, output). A forged frame can at most claim that the program
returned some value or raised some exception, which an honest program could do too; it
can't claim that a test passed, and anything malformed is the program's runtime error.

Returned values are made plain on this side (`plain`); what can't be stays here as an
object the tests reach by handle.

File descriptors: 0 stdin, 1 stdout, 2 stderr, 3 requests from the runner, 4 replies.
"""

from __future__ import annotations

import builtins
import os
import sys
from typing import Any

from . import codec, plain

REQUEST_FD = 3
REPLY_FD = 4
PROGRAM_FILE = "<program>"
PROGRAM_PATH = "program.py"  # made absolute by the zygote (the job's cwd) - see `main`
MAX_MESSAGE = 64 << 20


def _send(message: Any) -> None:
    codec.write_frame(REPLY_FD, codec.dumps(message))


def exception_info(exc: BaseException) -> dict:
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
    return {"type": type(exc).__name__, "message": message, "line": line}


def _compile(source: str, filename: str) -> tuple[Any, dict | None]:
    """(code, None), or (None, a description of why ``source`` does not compile)."""
    try:
        return compile(source, filename, "exec", dont_inherit=True), None
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        info = exception_info(e)
        if isinstance(e, SyntaxError):
            info["line"] = e.lineno if filename == PROGRAM_FILE else None
        # A ValueError is a source compile() rejects outright (null bytes, surrogates).
        info["syntax"] = isinstance(e, (SyntaxError, ValueError))
        return None, info


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def _namespace() -> dict[str, Any]:
    """The program's globals. ``__file__`` names a copy of the program in the job's own
    directory, as when a script is run from a file."""
    return {"__name__": "__main__", "__builtins__": builtins, "__file__": PROGRAM_PATH}


def _start(payload: dict, sources: list[tuple[str, str]], setup: bool = False) -> list | None:
    """Compile every source and run the setup: the part of the job no program code has run
    in yet, so the first frame it sends is the only one the trusted side believes about
    compilation and setup (``compile_error`` / ``setup_error`` / ``started``). Returns the
    namespace and the code objects, or None after reporting a failure. With ``setup``, the
    first source is the job's setup and runs here."""
    codes = []
    for source, filename in sources:
        code, info = _compile(source, filename)
        if info is not None:
            _send(["compile_error", filename, info])
            return None
        codes.append(code)
    try:  # plain system calls: cheaper than a text file object, in every job
        fd = os.open(PROGRAM_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload["program"].encode("utf-8", "surrogatepass"))
        finally:
            os.close(fd)
    except OSError:
        pass  # a read-only cwd (the program has no file then, like a ``-c`` script)
    namespace = _namespace()
    if setup:
        try:
            exec(codes[0], namespace)
        except BaseException as e:  # noqa: BLE001
            _flush()
            _send(["setup_error", exception_info(e)])
            return None
    _flush()
    _send(["started"])
    return [namespace, *codes]


def run_functions(payload: dict) -> int:
    """Define the program (assert / call jobs), then answer call requests until EOF."""
    started = _start(
        payload,
        [
            (payload["setup"], "<setup>"),
            (payload["program"], PROGRAM_FILE),
            (payload["test_setup"], "<test_setup>"),
        ],
        setup=True,
    )
    if started is None:
        return 0
    namespace, _, program, test_setup = started
    for code in (program, test_setup):
        try:
            exec(code, namespace)
        except BaseException as e:  # noqa: BLE001 - SystemExit etc. are reported, not obeyed
            _flush()
            _send(["error", exception_info(e)])
            return 0
    _flush()
    _send(["ready", [[k, callable(v)] for k, v in namespace.items() if type(k) is str]])
    return serve_calls(namespace, REQUEST_FD, REPLY_FD)


def serve_calls(namespace: dict[str, Any], request_fd: int, reply_fd: int) -> int:
    """Answer requests against ``namespace`` until the request channel closes: call a
    function (``call``), read a global (``get``), or use an object kept from an earlier
    reply (``callh``: call it, ``iter``: an iterator over it, ``next``: its next item)."""
    convert = plain.Converter()
    objects = convert.objects

    def send(message: Any) -> None:
        codec.write_frame(reply_fd, codec.dumps(message))

    def resolve(v: Any) -> Any:
        if type(v) is codec.Ref:
            return namespace[v.name]
        if type(v) in (list, tuple):
            return type(v)(resolve(x) for x in v)
        if type(v) is dict:
            return {k: resolve(x) for k, x in v.items()}
        return v

    def kept(i: int, _name: str) -> Any:
        return objects[i]

    while True:
        frame = codec.read_frame(request_fd, MAX_MESSAGE)
        if frame is None:
            return 0
        kind, name, args, kwargs = codec.loads(frame)
        try:
            if kind == "get":  # a test reads one of the program's values
                result = namespace[name]
            elif kind == "iter":
                result = iter(objects[name])
            elif kind == "next":
                result = next(objects[name])
            else:
                fn = objects[name] if kind == "callh" else namespace[name]
                args = resolve(codec.decode_value(args, kept))
                kwargs = resolve(codec.decode_value(kwargs, kept))
                result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            _flush()
            info = exception_info(e)
            if isinstance(e, KeyError) and e.args == (name,) and kind in ("get", "call"):
                if name not in namespace:
                    info.update(type="NameError", message=f"name {name!r} is not defined")
            send(["raise", info])
            continue
        _flush()
        try:
            wire = codec.encode_value(result, 0, convert)
        except (codec.Unencodable, RecursionError):
            wire = convert.keep(result)
        send(["value", wire])


def run_script(payload: dict) -> int:
    """Run the program as a script (stdin/stdout jobs); return its exit code."""
    started = _start(payload, [(payload["program"], PROGRAM_FILE)])
    if started is None:
        return 0
    namespace, code = started
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
    global PROGRAM_PATH
    status = 1
    try:
        PROGRAM_PATH = os.path.join(os.getcwd(), "program.py")
        if payload["mode"] == "script":
            status = run_script(payload)
        else:
            status = run_functions(payload)
    except BaseException:  # noqa: BLE001 - harness failure: the runner sees a dead process
        status = 70
    finally:
        _flush()
        os._exit(status)
