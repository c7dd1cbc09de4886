"""The program of every test run, run inside the sandbox (its source is passed to ``python -c``).

Self-contained: standard library only, no ``aem`` import (the project's code is not in the
sandbox). It reads a JSON payload from stdin (the repository's files, and for a verdict the hidden
calls), unpacks the repository into a fresh ``<root>/repo`` (``<root>/tmp`` is HOME and TMPDIR),
applies its own limits before any repository code runs, then

- ``tests``: runs ``unittest`` discovery on the visible tests and reports the counts, or
- ``cases``: calls each hidden ``module.function(*args)`` and reports each outcome: the returned
  value encoded as plain data (:func:`encode`), or the raised exception type's name,

as one JSON line on the result descriptor. Whatever this process reports is a claim of code the
agent controls, never a verdict: the parent compares the claimed outcomes with expected outcomes
that only it holds (:mod:`aem.envs.swe.verdict`), so forging or suppressing results gains nothing.

Limits applied here, on top of the sandbox's: the number of processes (``RLIMIT_NPROC``; binding
only for a non-root user), writes confined to ``root`` by Linux Landlock where the kernel offers
it, and an audit hook (PEP 578) refusing file access outside ``root`` and the standard library,
process creation, ``ctypes``, sockets and signals. The audit hook is an in-process guard, not a
security boundary (native code and raw system calls get around it): under bubblewrap it is a
second layer; in the ``unsafe`` mode it is most of what stands between the agent's code and the
machine (docs/security.md).
"""

from __future__ import annotations

import ast
import base64
import ctypes
import importlib
import json
import os
import platform
import resource
import sys
import unittest

_LANDLOCK_SYSCALLS = (444, 445, 446)  # create_ruleset, add_rule, restrict_self (unified numbers)
_LANDLOCK_ARCHES = ("x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x")
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1
_FS_WRITE_ABI1 = sum(1 << bit for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write/remove/make
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_TCP = (1 << 0) | (1 << 1)  # bind, connect
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_MAX_DEPTH = 50
# Audit events that change the file system: positions of their path and dir_fd arguments.
_CHANGE_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.link": ((0, 1), (2, 3)),
    "os.symlink": ((1,), (2,)),
    "os.truncate": ((0,), ()),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.utime": ((0,), (3,)),
    "os.mkfifo": ((0,), (2,)),
    "os.mknod": ((0,), (3,)),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), ()),
    "shutil.copyfile": ((1,), ()),
    "shutil.copytree": ((1,), ()),
    "shutil.move": ((0, 1), ()),
    "sqlite3.connect": ((0,), ()),
}
_READ_EVENTS = ("os.listdir", "os.scandir", "os.getxattr", "os.listxattr", "os.chdir")
_BLOCKED_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.call_function",
        "ctypes.addressof",
        "socket.__new__",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
    }
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _syscall() -> ctypes._CFuncPtr | None:
    if sys.platform != "linux" or platform.machine() not in _LANDLOCK_ARCHES:
        return None
    function = ctypes.CDLL(None, use_errno=True).syscall
    function.restype = ctypes.c_long
    return function


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is unavailable)."""
    syscall = _syscall()
    if syscall is None:
        return 0
    version = syscall(
        ctypes.c_long(_LANDLOCK_SYSCALLS[0]), None, ctypes.c_size_t(0),
        ctypes.c_uint32(_CREATE_RULESET_VERSION),
    )  # fmt: skip
    return max(int(version), 0)


def restrict_writes(writable: list[str]) -> int:
    """Allow file-system writes only beneath ``writable`` (and block TCP and cross-domain
    signals where the ABI allows) for this process and its future children; returns the ABI
    used, 0 if Landlock is unavailable (nothing is restricted then)."""
    abi = landlock_abi()
    syscall = _syscall()
    if abi < 1 or syscall is None:
        return 0
    fs = _FS_WRITE_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(fs, _NET_TCP if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = syscall(ctypes.c_long(_LANDLOCK_SYSCALLS[0]), ctypes.byref(attr),
                      ctypes.c_size_t(size), ctypes.c_uint32(0))  # fmt: skip
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for folder in writable:
            descriptor = os.open(folder, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(fs, descriptor)
                added = syscall(ctypes.c_long(_LANDLOCK_SYSCALLS[1]), ctypes.c_int(ruleset),
                                ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                                ctypes.c_uint32(0))  # fmt: skip
                if added < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {folder}")
            finally:
                os.close(descriptor)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if syscall(ctypes.c_long(_LANDLOCK_SYSCALLS[2]), ctypes.c_int(ruleset),
                   ctypes.c_uint32(0)) < 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def _standard_library() -> tuple[list[str], list[str]]:
    """Folders of the interpreter's standard library (readable) and its site folders (not)."""
    import site  # not run at start-up (-S): only for the folder names

    readable = [os.path.realpath(entry) for entry in sys.path if entry]
    hidden = site.getsitepackages() + site.getsitepackages([sys.base_prefix])
    return readable, [os.path.realpath(folder) for folder in hidden]


def install_guard(root: str) -> None:
    """Audit hook: writes only beneath ``root``; reads only beneath ``root`` and the standard
    library (not its site folders); no paths relative to other descriptors, no processes,
    ``ctypes``, sockets or signals. Audit hooks cannot be removed once installed."""
    writable = (os.path.realpath(root),)
    library, site_folders = _standard_library()
    readable = (*writable, *library, "/dev/null", "/dev/urandom")

    def beneath(path: object, roots: tuple[str, ...]) -> bool:
        full = os.path.realpath(os.path.join(os.getcwd(), os.fsdecode(path)))  # type: ignore[arg-type]
        return any(full == r or full.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def may_read(path: object) -> bool:
        return isinstance(path, int) or (
            beneath(path, readable) and not beneath(path, tuple(site_folders))
        )

    def check_open(path: object, mode: str | None, flags: int) -> None:
        if path is None or isinstance(path, int):
            return
        if mode is None and not os.path.isabs(os.fsdecode(path)):  # type: ignore[arg-type]
            raise PermissionError(f"sandbox: os.open of a relative path {path!r} (dir_fd?)")
        writing = any(c in mode for c in "wax+") if mode is not None else flags & _WRITE_FLAGS
        if (writing and not beneath(path, writable)) or not may_read(path):
            raise PermissionError(f"sandbox: opening {path!r} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            check_open(*args[:3])
        elif event in _CHANGE_EVENTS:
            paths, descriptors = _CHANGE_EVENTS[event]
            if any(position < len(args) and args[position] is not None for position in descriptors):
                raise PermissionError(f"sandbox: {event} relative to a descriptor is not allowed")
            for position in paths:
                target = args[position]
                if target is not None and (
                    isinstance(target, int) or not beneath(target, writable)
                ):
                    raise PermissionError(f"sandbox: {event} on {target!r} is not allowed")
        elif event in _READ_EVENTS:
            if args and args[0] is not None and not may_read(args[0]):
                raise PermissionError(f"sandbox: {event} on {args[0]!r} is not allowed")
        elif event in _BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)


def unpack(root: str, files: dict[str, str]) -> str:
    """Write ``files`` (relative path -> base64 content) into ``root/repo``; make ``root/tmp``."""
    repo = os.path.join(root, "repo")
    os.makedirs(repo)
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    for name, data in files.items():
        path = os.path.normpath(os.path.join(repo, name))
        if not path.startswith(repo + os.sep):
            raise ValueError(f"file outside the repository: {name!r}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))
    return repo


def run_tests(target: str, top: str) -> dict[str, int]:
    """Discover and run the ``unittest`` tests of ``target`` (folder or file); the counts."""
    loader = unittest.TestLoader()
    if os.path.isdir(target):
        suite = loader.discover(target, pattern="test*.py", top_level_dir=top)
    else:
        start, pattern = os.path.split(target)
        suite = loader.discover(start, pattern=pattern, top_level_dir=top)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped) + len(result.expectedFailures)
    return {
        "ran": result.testsRun,
        "failed": failed,
        "skipped": skipped,
        "passed": result.testsRun - failed - skipped,
    }


def encode(value: object, depth: int = 0) -> list:
    """``value`` as tagged JSON data (``["int", "3"]``, ``["list", [...]]``, ...); a value of any
    other type becomes ``["other", type name]``, which matches no expected value."""
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", bool(value)]
    if isinstance(value, int):
        return ["int", str(int(value))]  # str: raises past the interpreter's digit limit
    if isinstance(value, float):
        return ["float", repr(float(value))]
    if isinstance(value, str):
        return ["str", str(value)]
    if isinstance(value, bytes):
        return ["bytes", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, dict):
        items = [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
        return ["dict", items]
    for kind in (list, tuple, set, frozenset):
        if isinstance(value, kind):
            return [kind.__name__, [encode(item, depth + 1) for item in value]]
    return ["other", type(value).__name__]


def _exception_name(error: BaseException) -> str:
    kind = type(error)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def call_cases(cases: list[list[str]]) -> list[list]:
    """The outcome of each ``[module, function, repr(args)]``: ``["value", encoded]``,
    ``["raises", exception name]`` or ``["unencodable", type name]``."""
    outcomes: list[list] = []
    for module, function, args in cases:
        try:
            value = getattr(importlib.import_module(module), function)(*ast.literal_eval(args))
        except BaseException as error:  # any failure of the candidate is its outcome
            outcomes.append(["raises", _exception_name(error)])
            continue
        try:
            outcomes.append(["value", encode(value)])
        except Exception:
            outcomes.append(["unencodable", type(value).__name__])
    return outcomes


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    payload = json.loads(sys.stdin.buffer.read())
    result_fd = config["result_fd"]
    sys.dont_write_bytecode = True
    root = config["root"]
    repo = unpack(root, payload["files"])
    os.chdir(repo)
    if config["processes"] is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"],) * 2)
    if config["landlock"]:
        restrict_writes([root])
    if config["guard"]:
        install_guard(root)
    sys.path.insert(0, repo)
    if config["mode"] == "cases":
        report: dict = {"outcomes": call_cases(payload["cases"])}
    else:
        report = run_tests(os.path.join(repo, config["target"]), repo)
    os.write(result_fd, json.dumps(report).encode("utf-8") + b"\n")


if __name__ == "__main__":
    main(sys.argv)
