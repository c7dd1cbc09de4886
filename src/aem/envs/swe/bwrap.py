"""The default sandbox of test runs: bubblewrap (``bwrap``, Debian package ``bubblewrap``).

Every run is ``bwrap <options> python -S -s -B -c <runner>`` with

- every namespace unshared (``--unshare-all``: user, PID, network, IPC, UTS, cgroup) and
  ``--die-with-parent``: the run is PID 1's child in its own PID namespace, so every process it
  starts (double forks and new sessions included) is killed when it ends, and it sees no network
  but its own loopback (no route out, no DNS);
- user and group 65534 (nobody) with no capabilities, no new user namespaces inside, a new
  session (no terminal injection); when this process is root, bwrap itself runs as nobody so the
  run has no privilege outside either, where the interpreter is readable by nobody (else the
  run is nobody inside a user namespace mapped onto root: still no capabilities, but the process
  limit does not bind; see docs/security.md);
- a file system of read-only binds of the interpreter (its standard library, not its site
  folders or this project) and of the system's shared libraries, an empty ``/dev``, and a
  size-capped tmpfs at ``/episode`` (the disk quota) holding the repository copy and HOME/TMPDIR.
  Nothing else of the machine is visible: not ``/etc``, ``/home``, ``/tmp``, other episodes,
  the hidden tests or the project's source.

:func:`jail` checks once per process that bwrap works here and raises
:class:`SandboxUnavailableError` (naming the opt-out) when it does not.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

EPISODE_ROOT = "/episode"
NOBODY = 65534
_LIBRARY_FOLDERS = ("/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32")
_PROBE_SECONDS = 30.0


class SandboxUnavailableError(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces on this machine."""


@dataclass(frozen=True)
class Jail:
    """A working bwrap set-up: the interpreter to run inside, the file-system options and the
    user bwrap runs as (``None``: as this process)."""

    bwrap: str
    python: str
    mounts: tuple[str, ...]
    user: int | None

    def command(self, disk_bytes: int, program: list[str]) -> list[str]:
        """The command line running ``program`` (arguments after the interpreter)."""
        return [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", str(NOBODY),
            "--gid", str(NOBODY),
            *self.mounts,
            "--dev", "/dev",
            "--size", str(disk_bytes),
            "--tmpfs", EPISODE_ROOT,
            "--chdir", EPISODE_ROOT,
            "--",
            self.python,
            *program,
        ]  # fmt: skip

    def popen_options(self) -> dict:
        """``subprocess.Popen`` keyword arguments that start bwrap as :attr:`user`."""
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}


def _interpreter() -> str:
    """The base interpreter (a virtual environment's python without the environment)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _beneath(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mounts(python: str) -> tuple[str, ...]:
    """Read-only binds of the shared libraries and the interpreter, with the site folders and
    this project's package hidden under empty tmpfs mounts."""
    options: list[str] = []
    bound: list[str] = []
    for folder in _LIBRARY_FOLDERS:
        if os.path.islink(folder):
            options += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            options += ["--ro-bind", folder, folder]
            bound.append(folder)
    prefix = os.path.realpath(sys.base_prefix)
    if prefix in ("/", "/usr"):  # a system interpreter: its library folders and the binary
        stdlib = {os.path.dirname(os.__file__)} | {
            entry for entry in sys.path if os.path.basename(entry) == "lib-dynload"
        }
        roots = [python, *sorted(os.path.realpath(folder) for folder in stdlib)]
    else:
        roots = [prefix]
    for root in roots:
        if not any(_beneath(root, folder) for folder in bound):
            options += ["--ro-bind", root, root]
            bound.append(root)
    options += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for folder in _hidden_folders():
        if os.path.isdir(folder) and any(_beneath(folder, root) for root in bound):
            options += ["--tmpfs", folder]
    return tuple(options)


def _hidden_folders() -> list[str]:
    """Site folders of the base interpreter and of this one, and the ``aem`` package."""
    import aem

    folders = site.getsitepackages([sys.base_prefix]) + site.getsitepackages()
    folders += [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    folders.append(str(Path(aem.__file__).parent))
    return sorted({os.path.realpath(folder) for folder in folders})


def _probe(jail: Jail) -> str | None:
    """None if ``jail`` runs the interpreter here, else why not."""
    command = jail.command(1 << 20, ["-S", "-s", "-c", "import ast, json, unittest"])
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=_PROBE_SECONDS,
            stdin=subprocess.DEVNULL,
            **jail.popen_options(),
        )
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    if done.returncode != 0:
        return done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
    return None


@functools.cache
def jail() -> Jail:
    """The bwrap set-up for this machine (checked once per process)."""
    executable = shutil.which("bwrap")
    if executable is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: "
            "apt-get install bubblewrap) or opt into the weaker sandbox with isolation='unsafe' "
            "(aem train: env.kwargs.isolation=unsafe), which docs/security.md calls unsafe"
        )
    python = _interpreter()
    mounts = _mounts(python)
    users = [NOBODY, None] if os.geteuid() == 0 else [None]
    reasons = []
    for user in users:
        candidate = Jail(executable, python, mounts, user)
        reason = _probe(candidate)
        if reason is None:
            return candidate
        reasons.append(f"as {'nobody' if user else 'this user'}: {reason}")
    raise SandboxUnavailableError(
        f"bubblewrap cannot create its sandbox here ({'; '.join(reasons)}); allow unprivileged "
        "user namespaces (sysctl kernel.unprivileged_userns_clone=1) or opt into the weaker "
        "sandbox with isolation='unsafe' (aem train: env.kwargs.isolation=unsafe), which "
        "docs/security.md calls unsafe"
    )
