"""One episode's sandbox: a private temporary folder and resource-limited test runs.

Layout of the episode folder (removed on :meth:`Sandbox.close` and on garbage collection)::

    <episode>/repo     the checkout the agent sees and edits (writable by test runs)
    <episode>/tmp      HOME and TMPDIR of test runs (writable by test runs)
    <episode>/hidden   the hidden tests, written only for the final verdict (read-only to runs)
    <episode>/logs     captured test output (read-only to runs)

Every test run is ``sys.executable -S -B -c <runner>`` (:mod:`aem.envs.swe.runner`) in its own
session with a wall-clock timeout (the whole process group is killed), CPU-time, address-space,
file-size and open-file limits (``resource.setrlimit`` in ``preexec_fn``), an environment of only
PATH, HOME, TMPDIR, PYTHONPATH and three interpreter switches, and writes confined to ``repo``
and ``tmp`` (Landlock where the kernel has it, plus the runner's audit hook). A run that hangs,
crashes or exhausts a limit ends as a failed :class:`TestReport` and never stalls the caller.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aem.checks import require_int_at_least
from aem.envs.swe import runner as runner_module

RUNNER_SOURCE = Path(runner_module.__file__).read_text(encoding="utf-8")
_LOG_READ_LIMIT = 200_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one test run."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 256

    def __post_init__(self) -> None:
        if not (isinstance(self.wall_seconds, (int, float)) and math.isfinite(self.wall_seconds)):
            raise ValueError(f"wall_seconds must be a finite number, got {self.wall_seconds!r}")
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be > 0, got {self.wall_seconds!r}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "open_files"):
            require_int_at_least(name, getattr(self, name), 1)


@dataclass(frozen=True)
class TestReport:
    """Outcome of one test run. ``status`` is ``"completed"``, ``"timeout"`` (wall clock) or
    ``"crashed"`` (killed by a limit or a signal, or exited before reporting)."""

    __test__ = False  # not a pytest test class

    status: str
    ran: int
    passed: int
    failed: int
    skipped: int
    output: str
    detail: str = ""

    @property
    def all_passed(self) -> bool:
        """The run completed, ran at least one test and none failed or errored."""
        return self.status == "completed" and self.ran > 0 and self.failed == 0

    def summary(self) -> str:
        """One line: counts, or why the run stopped."""
        if self.status != "completed":
            return f"Test run stopped: {self.detail}."
        verdict = "OK" if self.failed == 0 else "FAILED"
        return (
            f"Ran {self.ran} tests: {self.passed} passed, {self.failed} failed, "
            f"{self.skipped} skipped ({verdict})."
        )


def _apply_limits(limits: Limits) -> None:
    """``preexec_fn``: set the run's resource limits in the child before ``exec``."""
    cpu = limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (ignored for root)


class Sandbox:
    """A temporary episode folder holding ``files`` in ``repo``, and test runs against it."""

    def __init__(
        self,
        files: dict[str, str],
        *,
        limits: Limits | None = None,
        landlock: bool = True,
        guard: bool = True,
    ) -> None:
        self.limits = limits or Limits()
        self.landlock = landlock
        self.guard = guard
        self.base = Path(tempfile.mkdtemp(prefix="aem-swe-")).resolve()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.base), True)
        self.repo, self.tmp = self.base / "repo", self.base / "tmp"
        self.hidden, self.logs = self.base / "hidden", self.base / "logs"
        for folder in (self.repo, self.tmp, self.hidden, self.logs):
            folder.mkdir()
        for name, text in files.items():
            path = self.repo / name
            if self.repo not in path.resolve().parents:
                raise ValueError(f"file path must stay inside the repository, got {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        self._runs = 0

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Delete the episode folder (idempotent)."""
        self._finalizer()

    def run_tests(self, target: Path | None = None) -> TestReport:
        """Run the visible tests under ``target`` (a folder or file inside ``repo``)."""
        target = self.repo / "tests" if target is None else target
        return self._run(target, top=self.repo)

    def run_hidden(self, tests: dict[str, str]) -> TestReport:
        """Write ``tests`` (file name -> source) to the hidden folder and run them."""
        shutil.rmtree(self.hidden, ignore_errors=True)
        self.hidden.mkdir()
        for name, text in tests.items():
            (self.hidden / Path(name).name).write_text(text, encoding="utf-8")
        return self._run(self.hidden, top=self.hidden)

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "TMPDIR": str(self.tmp),
            "PYTHONPATH": str(self.repo),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
        }

    def _run(self, target: Path, top: Path) -> TestReport:
        if self.closed:
            raise RuntimeError("the sandbox is closed")
        self._runs += 1
        config = {
            "target": str(target),
            "top": str(top),
            "path": [str(top), str(self.repo)],
            "writable": [str(self.repo), str(self.tmp)],
            "landlock": self.landlock,
            "guard": self.guard,
        }
        read_end, write_end = os.pipe()
        config["result_fd"] = write_end
        log_path = self.logs / f"run-{self._runs}.log"
        command = [sys.executable, "-S", "-B", "-c", RUNNER_SOURCE, json.dumps(config)]
        status, detail = "completed", ""
        try:
            with open(log_path, "wb") as log:
                try:
                    process = subprocess.Popen(
                        command,
                        cwd=self.repo,
                        env=self._environment(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        pass_fds=(write_end,),
                        start_new_session=True,
                        preexec_fn=partial(_apply_limits, self.limits),
                    )
                finally:
                    os.close(write_end)
                try:
                    process.wait(timeout=self.limits.wall_seconds)
                except subprocess.TimeoutExpired:
                    status = "timeout"
                    detail = f"exceeded the wall-clock limit of {self.limits.wall_seconds:g} s"
                finally:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)  # also stray children
                    process.wait()
            counts = _read_counts(read_end)
        finally:
            os.close(read_end)
        output = _read_log(log_path)
        code = process.returncode
        if status == "completed" and (counts is None or code != 0):
            status, detail = "crashed", _crash_detail(code, self.limits)
        if status != "completed" or counts is None:
            return TestReport(status, 0, 0, 0, 0, output, detail)
        return TestReport(
            status, counts["ran"], counts["passed"], counts["failed"], counts["skipped"], output
        )


def _read_counts(descriptor: int) -> dict[str, int] | None:
    """The runner's JSON counts from the result pipe (None if it never wrote them)."""
    os.set_blocking(descriptor, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
    for line in reversed(b"".join(chunks).decode("utf-8", "replace").splitlines()):
        try:
            counts = json.loads(line)
        except ValueError:
            continue
        keys = ("ran", "passed", "failed", "skipped")
        if isinstance(counts, dict) and all(isinstance(counts.get(k), int) for k in keys):
            return counts
    return None


def _read_log(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(_LOG_READ_LIMIT).decode("utf-8", "replace")


def _crash_detail(code: int | None, limits: Limits) -> str:
    if code is not None and code < 0:
        number = -code
        if number == signal.SIGXCPU:
            return f"exceeded the CPU-time limit of {limits.cpu_seconds} s"
        if number == signal.SIGXFSZ:
            return f"exceeded the file-size limit of {limits.file_bytes} bytes"
        return f"killed by signal {signal.Signals(number).name}"
    return f"the test process exited with code {code} before reporting results"
