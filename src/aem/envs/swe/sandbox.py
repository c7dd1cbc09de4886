"""One episode's sandbox: the agent's checkout and isolated, resource-limited test runs.

Layout of the episode folder (removed on :meth:`Sandbox.close` and on garbage collection)::

    <episode>/repo     the checkout the agent sees and edits with the tools (test runs never
                       write it: each run gets a fresh copy, so no run leaves anything behind)
    <episode>/run      the scratch root of the current run (``unsafe`` isolation only)
    <episode>/logs     captured test output

Every run is the runner (:mod:`aem.envs.swe.runner`) in a fresh interpreter, fed the checkout's
files (and for the verdict the hidden calls, never their expected outcomes) on stdin. With
``isolation="bwrap"`` (the default) it runs under bubblewrap (:mod:`aem.envs.swe.bwrap`): own PID
and network namespaces, user nobody, only the interpreter and the episode visible, a disk quota.
``isolation="unsafe"`` runs it as a plain subprocess confined only by Landlock (where the kernel
has it), the runner's audit hook and rlimits: no boundary against native code, processes may
outlive the run, no disk quota (docs/security.md). Both have a wall-clock timeout (the whole
process group is killed), CPU-time, address-space, file-size and open-file limits and an
environment of only PATH, HOME, TMPDIR and three interpreter switches. A run that hangs, crashes
or exhausts a limit ends as a failed :class:`TestReport` and never stalls the caller.
"""

from __future__ import annotations

import base64
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from aem.checks import require_int_at_least
from aem.envs.swe import bwrap
from aem.envs.swe import runner as runner_module
from aem.envs.swe.repos import HiddenCase
from aem.envs.swe.verdict import count_passed

RUNNER_SOURCE = Path(runner_module.__file__).read_text(encoding="utf-8")
ISOLATIONS = ("bwrap", "unsafe")
"""``bwrap``: bubblewrap (default); ``unsafe``: a plain subprocess (docs/security.md)."""
_LOG_READ_LIMIT = 200_000
_REPORT_READ_LIMIT = 8 << 20


@dataclass(frozen=True)
class Limits:
    """Resource limits of one test run. ``disk_bytes`` (the size of the run's file system) and
    ``processes`` (``RLIMIT_NPROC`` of a non-root run) apply under bubblewrap only."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 256
    disk_bytes: int = 64 << 20
    processes: int = 16

    def __post_init__(self) -> None:
        if not (isinstance(self.wall_seconds, (int, float)) and math.isfinite(self.wall_seconds)):
            raise ValueError(f"wall_seconds must be a finite number, got {self.wall_seconds!r}")
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be > 0, got {self.wall_seconds!r}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "open_files", "processes"):
            require_int_at_least(name, getattr(self, name), 1)
        require_int_at_least("disk_bytes", self.disk_bytes, 1 << 20)


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


def _apply_limits(limits: Limits, no_processes: bool) -> None:
    """``preexec_fn``: set the run's resource limits in the child before ``exec``."""
    cpu = limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if no_processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (ignored for root)


@dataclass(frozen=True)
class _Outcome:
    """What one run left: its status, the runner's JSON report (if any) and its output."""

    status: str
    detail: str
    report: Any
    output: str


class Sandbox:
    """A temporary episode folder holding ``files`` in ``repo``, and test runs against it.
    Raises :class:`~aem.envs.swe.bwrap.SandboxUnavailableError` when ``isolation="bwrap"`` cannot
    work on this machine."""

    def __init__(
        self,
        files: dict[str, str],
        *,
        limits: Limits | None = None,
        isolation: str = "bwrap",
        landlock: bool = True,
        guard: bool = True,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        self.jail = bwrap.jail() if isolation == "bwrap" else None
        self.isolation = isolation
        self.limits = limits or Limits()
        self.landlock = landlock
        self.guard = guard
        self.base = Path(tempfile.mkdtemp(prefix="aem-swe-")).resolve()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.base), True)
        self.repo, self.logs = self.base / "repo", self.base / "logs"
        for folder in (self.repo, self.logs):
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
        target = self.repo / "tests" if target is None else Path(target)
        relative = os.path.relpath(target, self.repo)
        if relative.startswith(".."):
            raise ValueError(f"target must be inside the repository, got {target}")
        done = self._run({"mode": "tests", "target": relative}, cases=[])
        counts = done.report
        keys = ("ran", "passed", "failed", "skipped")
        if done.status != "completed" or not (
            isinstance(counts, dict) and all(type(counts.get(k)) is int for k in keys)
        ):
            return self._stopped(done)
        return TestReport("completed", *(counts[k] for k in keys), done.output)

    def run_hidden(self, cases: Sequence[HiddenCase]) -> TestReport:
        """Call every hidden case on the checkout in a run and judge the claimed outcomes here
        (:func:`~aem.envs.swe.verdict.count_passed`): ``passed`` counts the right ones."""
        calls = [[case.module, case.function, repr(case.args)] for case in cases]
        done = self._run({"mode": "cases", "target": ""}, cases=calls)
        passed = count_passed(cases, done.report) if done.status == "completed" else None
        if passed is None:
            return self._stopped(done)
        total = len(cases)
        return TestReport("completed", total, passed, total - passed, 0, done.output)

    def _stopped(self, done: _Outcome) -> TestReport:
        detail = done.detail or "the test process exited without a complete report"
        status = "crashed" if done.status == "completed" else done.status
        return TestReport(status, 0, 0, 0, 0, done.output, detail)

    def _environment(self, root: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": f"{root}/tmp",
            "TMPDIR": f"{root}/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
        }

    def _root(self) -> str:
        """The run's root as the runner sees it (a fresh scratch folder without bwrap)."""
        if self.jail is not None:
            return bwrap.EPISODE_ROOT
        scratch = self.base / "run"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        return str(scratch)

    def _run(self, settings: dict[str, Any], cases: list[list[str]]) -> _Outcome:
        if self.closed:
            raise RuntimeError("the sandbox is closed")
        self._runs += 1
        root = self._root()
        payload = json.dumps({"files": _snapshot(self.repo), "cases": cases}).encode("utf-8")
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as result:
            stdin.write(payload)
            stdin.seek(0)
            config = {
                **settings,
                "root": root,
                "result_fd": result.fileno(),
                "processes": self.limits.processes if self.jail else None,
                "landlock": self.landlock,
                "guard": self.guard,
            }
            program = ["-S", "-s", "-B", "-c", RUNNER_SOURCE, json.dumps(config)]
            if self.jail is None:
                command, options = [sys.executable, *program], {}
            else:
                command = self.jail.command(self.limits.disk_bytes, program)
                options = self.jail.popen_options()
            log_path = self.logs / f"run-{self._runs}.log"
            status, detail, code = self._execute(command, options, stdin, result, root, log_path)
            report = _read_report(result)
        output = _read_log(log_path)
        if status == "completed" and code != 0:
            status, detail = "crashed", self._crash_detail(code)
        return _Outcome(status, detail, report, output)

    def _execute(
        self,
        command: list[str],
        options: dict[str, Any],
        stdin: IO[bytes],
        result: IO[bytes],
        root: str,
        log_path: Path,
    ) -> tuple[str, str, int | None]:
        """Run ``command`` under the wall clock; ``(status, detail, exit code)``."""
        status, detail = "completed", ""
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd="/" if self.jail else root,
                env=self._environment(root),
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(result.fileno(),),
                start_new_session=True,
                preexec_fn=partial(_apply_limits, self.limits, self.jail is None),
                **options,
            )
            try:
                process.wait(timeout=self.limits.wall_seconds)
            except subprocess.TimeoutExpired:
                status = "timeout"
                detail = f"exceeded the wall-clock limit of {self.limits.wall_seconds:g} s"
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)  # and, without bwrap, stray children
                process.wait()
        return status, detail, process.returncode

    def _crash_detail(self, code: int | None) -> str:
        number = None
        if code is not None and code < 0:
            number = -code
        elif self.jail is not None and code is not None and code > 128:
            number = code - 128  # bwrap exits with 128 + the signal that killed the run
        if number == signal.SIGXCPU:
            return f"exceeded the CPU-time limit of {self.limits.cpu_seconds} s"
        if number == signal.SIGXFSZ:
            return f"exceeded the file-size limit of {self.limits.file_bytes} bytes"
        if number is not None and number in signal.valid_signals():
            return f"killed by signal {signal.Signals(number).name}"
        return f"the test process exited with code {code} before reporting results"


def _snapshot(repo: Path) -> dict[str, str]:
    """Every regular file under ``repo`` (symlinks skipped): relative path -> base64 content."""
    files = {}
    for folder, _, names in os.walk(repo):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    data = handle.read()
                files[os.path.relpath(path, repo)] = base64.b64encode(data).decode("ascii")
    return files


def _read_report(result: IO[bytes]) -> Any:
    """The runner's last JSON line on the result file (None if it never wrote one)."""
    result.seek(0)
    lines = result.read(_REPORT_READ_LIMIT).decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            continue
    return None


def _read_log(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(_LOG_READ_LIMIT).decode("utf-8", "replace")
