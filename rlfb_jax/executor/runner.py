"""Trusted test runners: turn a `Job` into an `Outcome` using job processes.

Tests never run inside the program's process. For assert jobs the test snippets (trusted
benchmark code) execute here, in the worker; every name a test takes from the program
(``candidate``'s target, MBPP's function, a fixture like ``root``) is a `Remote` whose calls
go to the job process, which sends back only strictly-encoded values. Expected values and
the test source never enter the job process, so a program can neither read them nor forge a
verdict: it can only return values. Call jobs compare returned values to expected values by
value and exact type. Stdin/stdout jobs run the program once per test and compare the output
the worker captured itself, ignoring whitespace differences.

Statuses (first failing test decides the job's status). Each is decided from what this
side observes; what the program reports about its own exceptions (type name, line) is kept
as a label (an identifier, a line of the program) and never picks a status:
  syntax_error    the program does not compile (found by compile() before running; no test).
  wrong_answer    a test's assert failed, a returned value differs (or is an object the task
                  cannot expect), the output differs, or the test itself raised on the value.
  runtime_error   the program raised (its type, message and line are reported as labels,
                  MemoryError included), exited or raised SystemExit/KeyboardInterrupt before
                  all tests finished, was killed by a signal, or sent anything malformed or
                  unexpected on its result channel.
  timeout         a per-test or per-job wall-clock deadline, or the CPU-time limit, passed.
  memory_exceeded the process was killed at the address-space limit or by the OOM killer.
  output_exceeded the program wrote more than the output cap (stdout+stderr) or returned a
                  value larger than the reply cap.
  sandbox_error   the job cannot be run as given (a test or setup that does not compile or
                  fails before the program starts, an argument the test passes that cannot
                  be sent) or the executor itself failed. Never chosen by the program.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import signal
import sys
import time
from typing import Any

from . import codec
from .child import PROGRAM_FILE
from .jobs import Job, Outcome, TestResult
from .session import (
    ProcessEnded,
    Remote,
    SandboxLimitation,
    Session,
    ZygoteClient,
    claimed_labels,
)

EXCERPT = 4096


@functools.lru_cache(maxsize=256)
def compile_test(source: str) -> tuple[Any, frozenset[str], frozenset[str]]:
    """Compile a test snippet.

    Returns the code, the names it loads without binding them (builtins included), and
    those of them used only as ``name.attribute`` (module candidates like ``sys``, ``math``).
    """
    tree = ast.parse(source, "<test>")
    bound, loaded, attr_bases = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attr_bases.add(id(node.value))
    other_uses: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.add(node.id)
                if id(node) not in attr_bases:
                    other_uses.add(node.id)
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    free = frozenset(loaded - bound)
    code = compile(tree, "<test>", "exec", dont_inherit=True)
    return code, free, frozenset(free - other_uses)


def test_namespace(
    session: Session,
    free: frozenset[str],
    modules_only: frozenset[str],
    entry_point: str | None,
    program_names: frozenset[str],
) -> dict[str, Any]:
    """Globals for one test: trusted builtins and stdlib modules, `Remote`s for the program's
    functions, and strictly decoded copies of the program's other values.

    A builtin name stays the trusted builtin even if the program redefines it (so a program
    can't swap ``len`` or ``sorted`` under the test), except the job's own entry point (MBPP
    task 126 *is* a function called ``sum``).
    """
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__test__"}
    for name in free:
        if hasattr(builtins, name) and not (name == entry_point and name in program_names):
            continue
        if name in modules_only and name in sys.stdlib_module_names:
            try:
                namespace[name] = importlib.import_module(name)
                continue
            except ImportError:
                pass
        if name in session.program_values:
            namespace[name] = session.call(name, (), {}, kind="get")
        else:
            namespace[name] = Remote(session, name)
    return namespace


class TestDeadline:
    """The session's deadline, enforced on trusted test code too (SIGALRM in the worker's
    main thread): a test that loops in Python over a program's value, as in
    ``for i in range(f()): ...`` with a huge result, times out like the program would have,
    instead of hanging the worker. The alarm repeats, so a test that swallows the first
    one meets the next. (A single long C-level operation can't be interrupted: the pool
    then replaces the worker and reports a timeout.)"""

    REPEAT = 0.05
    _session: Session | None = None  # the session whose deadline the alarm enforces

    def __init__(self, session: Session):
        self.session = session
        if signal.getsignal(signal.SIGALRM) is not TestDeadline._fire:
            signal.signal(signal.SIGALRM, TestDeadline._fire)  # once per worker

    @staticmethod
    def _fire(signum: int, frame: Any) -> None:
        session = TestDeadline._session
        if session is not None:
            session.end(session.deadline_status, "Timeout", "the time limit was exceeded")

    def __enter__(self) -> TestDeadline:
        TestDeadline._session = self.session
        left = max(self.session.deadline - time.monotonic(), 0.001)
        signal.setitimer(signal.ITIMER_REAL, left, self.REPEAT)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        TestDeadline._session = None


class JobRunner:
    """Runs jobs through one zygote with the pool's settings."""

    def __init__(self, zygote: ZygoteClient, settings: dict):
        self.zygote = zygote
        self.settings = settings

    # ----------------------------------------------------------------- helpers

    def _spawn(
        self, job: Job, mode: str, deadline: float, stdin: str | bytes | None = None
    ) -> Session:
        payload = {
            "mode": mode,
            "program": job.program,
            "setup": job.setup,
            "test_setup": job.test_setup,
            # RLIMIT_CPU follows the job's own time limit (one job may ask for more).
            "cpu_seconds": int(max(1.0, deadline - time.monotonic())) + 2,
        }
        session = self.zygote.spawn(payload, stdin)
        session.program_lines = job.program.count("\n") + 1
        session.deadline = deadline
        session.output_limit = self.settings["output_limit_bytes"]
        session.memory_limit = self.settings["memory_limit_mb"] << 20
        return session

    def run(self, job: Job) -> Outcome:
        start = time.monotonic()
        timeout = job.timeout if job.timeout is not None else self.settings["timeout"]
        per_test = (
            job.timeout_per_test
            if job.timeout_per_test is not None
            else self.settings["timeout_per_test"]
        )
        deadline = start + timeout
        if job.kind == "stdio":
            fields = self._run_stdio(job, deadline, per_test)
        elif job.kind in ("assert", "call"):
            fields = self._run_functions(job, deadline, per_test)
        else:
            fields = {
                "status": "sandbox_error",
                "error_type": "ValueError",
                "error_message": f"unknown job kind {job.kind!r}",
            }
        # No process of this job outlives its outcome, and its directory is gone.
        self.zygote.wait_clean()
        return Outcome(duration=time.monotonic() - start, job_id=job.job_id, **fields)

    # ----------------------------------------------------------- assert / call

    def _start(self, session: Session) -> dict | None:
        """Wait for the program to be defined; a dict of outcome fields if it failed.

        The first frame is written before any program code runs (see `child`), so it alone
        may blame compilation or the job's setup; every later frame is the program's word.
        """
        try:
            failed = _first_frame(session.wait_message())
            if failed is not None:
                return failed
            message = session.wait_message()
        except ProcessEnded as e:
            return _fatal_fields(e)
        kind = message[0]
        if kind == "ready" and len(message) == 2 and type(message[1]) is list:
            names = [n for n in message[1] if type(n) is list and len(n) == 2]
            names = [n for n in names if type(n[0]) is str and type(n[1]) is bool]
            session.program_names = frozenset(n for n, _ in names)
            session.program_values = frozenset(n for n, is_callable in names if not is_callable)
            return None
        if kind == "error" and len(message) == 2 and type(message[1]) is dict:
            exc = claimed_labels(session, message[1])
            return {
                "status": "runtime_error",
                "error_type": exc["type"],
                "error_message": exc["message"],
                "error_line": exc["line"],
            }
        try:
            session.end("runtime_error", "ProtocolError", f"unexpected message {str(kind)[:50]!r}")
        except ProcessEnded as e:
            return _fatal_fields(e)
        return None

    def _run_functions(self, job: Job, deadline: float, per_test: float) -> dict:
        session = self._spawn(job, "functions", deadline)
        results: list[TestResult] = []
        try:
            failed = self._start(session)
            if failed is None:
                for test in job.tests:
                    results.append(self._one_call_test(job, session, test, deadline, per_test))
        finally:
            session.close()
        fields = failed if failed is not None else _summarize(results)
        fields["stdout"] = session.stdout[:EXCERPT].decode(errors="replace")
        fields["stderr"] = session.stderr[:EXCERPT].decode(errors="replace")
        return fields

    def _one_call_test(
        self, job: Job, session: Session, test: Any, deadline: float, per_test: float
    ) -> TestResult:
        t0 = time.monotonic()
        if session.fatal is not None:
            e = session.fatal
            return TestResult(False, e.status, e.error_type, "not run: " + e.message)
        session.deadline = min(deadline, t0 + per_test)
        try:
            with TestDeadline(session):
                if job.kind == "call":
                    passed, etype, message = self._check_call(job, session, test)
                else:
                    passed, etype, message = self._check_assert(job, session, test)
            status = "passed" if passed else "wrong_answer"
            line = None
        except ProcessEnded as e:
            status, etype, message, line = e.status, e.error_type, e.message, e.line
        except SandboxLimitation as e:
            status, etype, message, line = "sandbox_error", "SandboxLimitation", str(e), None
        except BaseException as e:  # noqa: BLE001 - any exception of the test is a verdict
            remote = getattr(e, "rlfb_remote", None)
            if remote is not None:  # the program's own exception: labels only, see _claimed
                etype, message, line = remote["type"], remote["message"], remote["line"]
                status = "runtime_error"
            else:
                status = "wrong_answer"
                etype, message, line = type(e).__name__, str(e)[:2000], None
        if session.fatal is not None:  # the process ended even if the test swallowed it
            e = session.fatal
            status, etype, message, line = e.status, e.error_type, e.message, e.line
        return TestResult(
            status == "passed", status, etype, message, time.monotonic() - t0, error_line=line
        )

    def _check_assert(self, job: Job, session: Session, test: Any) -> tuple[bool, Any, Any]:
        if not isinstance(test, str):
            raise SandboxLimitation(f"an assert test must be a string, got {type(test).__name__}")
        try:
            code, free, modules_only = compile_test(test)
        except SyntaxError as e:
            raise SandboxLimitation(f"test does not compile: {e}") from None
        namespace = test_namespace(
            session, free, modules_only, job.entry_point, session.program_names
        )
        try:
            exec(code, namespace)
        except AssertionError as e:
            if getattr(e, "rlfb_remote", None) is not None:
                raise
            return False, "AssertionError", str(e)[:2000] or "assertion failed"
        return True, None, None

    def _check_call(self, job: Job, session: Session, test: Any) -> tuple[bool, Any, Any]:
        try:
            args, expected = test
        except (TypeError, ValueError):
            raise SandboxLimitation("a call test must be an (args, expected) pair") from None
        if not job.entry_point:
            raise SandboxLimitation("call jobs need an entry_point")
        value = session.call(job.entry_point, tuple(args), {})
        if codec.strict_equal(value, expected):
            return True, None, None
        message = (
            f"expected {_short(expected)} ({type(expected).__name__}), "
            f"got {_short(value)} ({type(value).__name__})"
        )
        return False, "WrongAnswer", message

    # ------------------------------------------------------------------- stdio

    def _run_stdio(self, job: Job, deadline: float, per_test: float) -> dict:
        results: list[TestResult] = []
        first_out, first_err = b"", b""
        for i, test in enumerate(job.tests):
            t0 = time.monotonic()
            try:
                stdin, expected = test
            except (TypeError, ValueError):
                results.append(
                    TestResult(
                        False,
                        "sandbox_error",
                        "SandboxLimitation",
                        "a stdio test must be an (input, output) pair",
                    )
                )
                continue
            if t0 >= deadline:
                results.append(TestResult(False, "timeout", "Timeout", "not run: job deadline"))
                continue
            stdin = stdin if isinstance(stdin, bytes) else _text(stdin)
            try:
                session = self._spawn(job, "script", min(deadline, t0 + per_test), stdin)
            except SandboxLimitation as e:
                results.append(TestResult(False, "sandbox_error", "SandboxLimitation", str(e)))
                continue
            try:
                result, early = self._one_stdio_test(session, _text(expected))
            finally:
                session.close()
            if i == 0:
                first_out, first_err = bytes(session.stdout), bytes(session.stderr)
            if early is not None:
                early.setdefault("error_line", None)
                early["stdout"] = first_out[:EXCERPT].decode(errors="replace")
                early["stderr"] = first_err[:EXCERPT].decode(errors="replace")
                return early
            results.append(
                TestResult(
                    result.passed,
                    result.status,
                    result.error_type,
                    result.error_message,
                    time.monotonic() - t0,
                    error_line=result.error_line,
                )
            )
        fields = _summarize(results)
        fields["stdout"] = first_out[:EXCERPT].decode(errors="replace")
        fields["stderr"] = first_err[:EXCERPT].decode(errors="replace")
        return fields

    def _one_stdio_test(self, session: Session, expected: str) -> tuple[TestResult, dict | None]:
        try:
            session.wait_exit()
            frames = []
            while (frame := session.pop_frame()) is not None:
                frames.append(frame)
        except ProcessEnded as e:
            return TestResult(False, e.status, e.error_type, e.message, error_line=e.line), None
        messages = [_loads(f) for f in frames]
        failed = _first_frame(messages[0] if messages else None)
        if failed is not None and failed["error_type"] != "ProtocolError":
            return TestResult(False, failed["status"]), failed  # compile or setup: no run
        try:
            code = session.exit_code()
        except ProcessEnded as e:
            return TestResult(False, e.status, e.error_type, e.message, error_line=e.line), None
        # After "started": nothing (a clean exit), or one error report and a failed exit.
        later = messages[1:]
        allowed = [["error"]] if code != 0 else []
        shape = [m[:1] if m else m for m in later]
        if failed is not None or session.frames.pending or shape not in (allowed, []):
            return TestResult(
                False, "runtime_error", "ProtocolError", "the program broke the result channel"
            ), None
        if code != 0:
            claim = claimed_labels(session, later[-1][1]) if later and len(later[-1]) > 1 else {}
            etype = claim.get("type", "NonZeroExit")
            message = claim.get("message", f"the program exited with code {code}")
            return TestResult(
                False, "runtime_error", etype, message, error_line=claim.get("line")
            ), None
        out = session.stdout.decode(errors="replace")
        if outputs_match(out, expected):
            return TestResult(True, "passed"), None
        return TestResult(
            False, "wrong_answer", "WrongAnswer", f"expected {_short(expected)}, got {_short(out)}"
        ), None


def _loads(frame: bytes) -> list | None:
    """A frame of the program's as a non-empty list, or None when malformed."""
    try:
        message = codec.loads(frame)
    except codec.DecodeError:
        return None
    return message if type(message) is list and message else None


def _first_frame(message: list | None) -> dict | None:
    """Outcome fields from the frame a job process sends before any program code runs
    (None once it says ``started``)."""
    if message is None or not message or type(message[0]) is not str:
        return _protocol_error("no start message")
    kind = message[0]
    if kind == "started" and len(message) == 1:
        return None
    info = message[-1] if type(message[-1]) is dict else {}
    etype, msg = str(info.get("type"))[:100], str(info.get("message"))[:2000]
    if kind == "compile_error" and len(message) == 3:
        if message[1] != PROGRAM_FILE:  # the job's own setup or test_setup
            return {"status": "sandbox_error", "error_type": etype, "error_message": msg}
        line = info.get("line") if type(info.get("line")) is int else None
        status = "syntax_error" if info.get("syntax") else "runtime_error"
        return {"status": status, "error_type": etype, "error_message": msg, "error_line": line}
    if kind == "setup_error" and len(message) == 2:
        return {"status": "sandbox_error", "error_type": etype, "error_message": msg}
    return _protocol_error(f"unexpected start message {str(kind)[:50]!r}")


def _protocol_error(what: str) -> dict:
    return {"status": "runtime_error", "error_type": "ProtocolError", "error_message": what}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def outputs_match(actual: str, expected: str) -> bool:
    """Whitespace-tolerant comparison: same tokens in the same order (line breaks,
    trailing spaces and blank lines don't matter)."""
    return actual.split() == expected.split()


def _fatal_fields(e: ProcessEnded) -> dict:
    return {
        "status": e.status,
        "error_type": e.error_type,
        "error_message": e.message,
        "error_line": e.line,
    }


def _summarize(results: list[TestResult]) -> dict:
    fields: dict[str, Any] = {"status": "passed", "tests": tuple(results)}
    for r in results:
        if not r.passed:
            fields.update(
                status=r.status,
                error_type=r.error_type,
                error_message=r.error_message,
                error_line=r.error_line,
            )
            break
    return fields


def _short(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = "<unprintable>"
    return text if len(text) <= limit else text[:limit] + "..."
