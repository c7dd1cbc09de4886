"""The probes of issue 17 as hostile agent actions through ``SweEnv.step``: reward without a fix,
escapes from test runs, answer oracles, network, broken tools (docs/security.md lists them)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from aem.envs.swe import Limits, SandboxUnavailableError, SweEnv, bwrap, edit_action

FAST = Limits(wall_seconds=10.0, cpu_seconds=5, memory_bytes=512 << 20)
MARKER = "aem-probe-7c1f"  # in the command lines of processes the probes start


def start(task_index: int = 0, limits: Limits = FAST, **kwargs: object) -> SweEnv:
    env = SweEnv("train", limits=limits, max_observation_chars=20_000, **kwargs)
    env.reset(options={"task_index": task_index})
    return env


def unittest_source(body: str) -> str:
    """A unittest module whose single test runs ``body``."""
    indented = "\n".join("        " + line for line in body.strip().split("\n"))
    return f"import unittest\n\n\nclass T(unittest.TestCase):\n    def test_x(self):\n{indented}\n"


def probe(env: SweEnv, body: str) -> str:
    """Create a visible test running ``body`` and run it (two actions); its output."""
    name = f"tests/test_probe_{env.steps_taken}.py"
    _, _, _, _, info = env.step(edit_action(name, "", unittest_source(body)))
    assert info["valid"]
    observation, _, _, _, info = env.step(f"run_tests {name}")
    assert info["valid"]
    return observation


def package_edit(env: SweEnv, code: str, *, at_end: bool = False) -> str:
    """The edit adding ``code`` to the package's ``__init__.py`` (first or last line)."""
    path = f"{env.task.package}/__init__.py"
    lines = env.task.files[path].rstrip("\n").split("\n")
    anchor = lines[-1] if at_end else lines[0]
    new = f"{anchor}\n{code}" if at_end else f"{code}\n{anchor}"
    return edit_action(path, anchor, new)


def submit_with(env: SweEnv, code: str, *, at_end: bool = False) -> tuple[float, dict]:
    """Add ``code`` to the package, then submit; the reward and the final info."""
    _, _, _, _, info = env.step(package_edit(env, code, at_end=at_end))
    assert info["valid"]
    _, reward, terminated, _, info = env.step("submit")
    assert terminated
    return reward, info


def host_processes_with(marker: str) -> list[int]:
    """Host processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def surviving_processes_with(marker: str, grace: float = 10.0) -> list[int]:
    """Host processes holding ``marker`` that are still there ``grace`` seconds on: a killed
    process leaves /proc a moment after its signal, later on a loaded machine."""
    deadline = time.monotonic() + grace
    while (found := host_processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def make_chain(folder: Path, depth: int, *, remove: bool = False) -> None:
    """Make (or remove) a chain of ``depth`` nested ``d`` folders in ``folder``, one relative
    step at a time (their full paths are too long for the kernel)."""
    start = os.getcwd()
    try:
        os.chdir(folder)
        for _ in range(depth):
            if not remove:
                os.mkdir("d")
            os.chdir("d")
        for _ in range(depth if remove else 0):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(start)


# ---- 1. reward without a fix ----------------------------------------------------------------

REWARD_HACKS = {
    "unittest patched": (
        "import unittest as u\nu.TestResult.addFailure = u.TestResult.addError = lambda *a: None"
    ),
    "forged counts then exit": (
        "import json, os, sys\nfd = json.loads(sys.argv[-1])['result_fd']\n"
        'os.write(fd, b\'{"ran": 29, "passed": 29, "failed": 0, "skipped": 0}\\n\')\n'
        "os._exit(0)"
    ),
    "forged outcomes then exit": (
        "import json, os, sys\nfd = json.loads(sys.argv[-1])['result_fd']\n"
        "claims = [['value', ['none']]] * 200\n"
        "os.write(fd, json.dumps({'outcomes': claims}).encode() + b'\\n')\nos._exit(0)"
    ),
}


@pytest.mark.parametrize("hack", sorted(REWARD_HACKS))
def test_tampering_with_the_test_harness_gets_no_reward(hack: str) -> None:
    env = start()
    reward, info = submit_with(env, REWARD_HACKS[hack])
    assert reward == 0.0 and not info["won"] and info["tests_failed"] >= 1
    env.close()


def test_values_equal_to_everything_get_no_reward() -> None:
    code = (
        "class _Any:\n    __eq__ = lambda self, other: True\n    __ne__ = lambda self, o: False\n"
        "import sys as _sys\n"
        "for _name in __all__:\n"
        "    _function = globals()[_name]\n"
        "    setattr(_sys.modules[_function.__module__], _name, lambda *a, **k: _Any())"
    )
    env = start()
    reward, info = submit_with(env, code, at_end=True)
    assert reward == 0.0 and info["tests_passed"] == 0
    env.close()


@pytest.mark.parametrize("guard", [True, False])
def test_the_final_run_sees_neither_hidden_cases_nor_the_projects_source(guard: bool) -> None:
    """The agent's code scans every readable file during the final run for the reference fix
    (it is in the project's template catalogue) and tries to import the project. Without the
    audit hook (``guard=False``) only the file-system namespace stands in the way."""
    other = start(task_index=1)  # another episode, whose checkout must stay out of reach too
    env = start(guard=guard, limits=Limits(wall_seconds=120.0, cpu_seconds=60))
    secret = env.task.fix.new.strip()
    code = (
        "import os, sys\n"
        f"_secret = {secret[::-1]!r}[::-1]\n"  # reversed: this file must not match itself
        "_files = 0\n"
        "_TEXT = ('.py', '.pyc', '.json', '.jsonl', '.txt', '.md', '.yaml', '.toml', '.cfg')\n"
        "for _top, _dirs, _names in os.walk('/'):\n"
        "    _dirs[:] = [d for d in _dirs if _top != '/' or d not in ('proc', 'sys', 'dev')]\n"
        "    for _name in _names:\n"
        "        _path = os.path.join(_top, _name)\n"
        "        try:\n"
        "            if not _name.endswith(_TEXT):\n"
        "                continue  # shared libraries and the like: not where sources hide\n"
        "            with open(_path, 'rb') as _handle:\n"
        "                _data = _handle.read(1 << 22)\n"
        "        except OSError:\n"
        "            continue\n"
        "        _files += 1\n"
        "        if _secret.encode() in _data and '/episode/' not in _path:\n"
        "            print('FOUND', _path, file=sys.stderr)\n"
        f"for _path in ({str(other.sandbox.repo)!r}, '/etc/passwd', '/work', '/home', '/tmp'):\n"
        "    if os.path.exists(_path):\n"
        "        print('FOUND', _path, file=sys.stderr)\n"
        "for _root in sys.path + [os.getcwd()]:\n"
        "    sys.path.append(os.path.join(_root, 'src'))\n"
        "try:\n"
        "    import aem.envs.swe.repos\n"
        "    print('FOUND aem', file=sys.stderr)\n"
        "except ImportError:\n"
        "    pass\n"
        "print('SCANNED', _files, file=sys.stderr)"
    )
    reward, _ = submit_with(env, code)
    output = env.last_verdict.output
    assert reward == 0.0 and "FOUND" not in output, output[-2000:]
    assert "SCANNED" in output, env.last_verdict
    scanned = int(output.split("SCANNED ")[1].split()[0])
    assert guard or scanned > 100  # the standard library is readable: the scan really ran
    env.close()
    other.close()


# ---- 2. processes outliving the run; 7. network ---------------------------------------------

SPAWN_SETSID = f"""
import _posixsubprocess, os, sys
argv = [sys.executable, '-c', 'import time; time.sleep(120)', '{MARKER}']
read_end, write_end = os.pipe()
pid = _posixsubprocess.fork_exec(
    argv, [os.fsencode(sys.executable)], True, (), None, None, -1, -1, -1, -1, -1, -1,
    read_end, write_end, False, True, -1, None, None, None, -1, None, False)
print('SPAWNED', pid)
"""
DOUBLE_FORK = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', '{MARKER}'])
    os._exit(0)
time.sleep(0.2)
print('SPAWNED')
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="fork_exec's signature of Python 3.11+")
@pytest.mark.parametrize(("spawn", "guard"), [(SPAWN_SETSID, True), (DOUBLE_FORK, False)])
def test_processes_started_by_a_run_die_with_it(spawn: str, guard: bool) -> None:
    env = start(guard=guard)
    output = probe(env, spawn)
    assert "SPAWNED" in output, output[-1500:]
    assert surviving_processes_with(MARKER) == []
    env.close()


@pytest.mark.parametrize("guard", [True, False])
def test_runs_reach_no_network(guard: bool) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp_port, tcp_port = udp.getsockname()[1], tcp.getsockname()[1]
    attempts = {
        "udp": f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.sendto(b'x', ('127.0.0.1', {udp_port}))",
        "sendmsg": f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.connect(('127.0.0.1', {udp_port}))\ns.sendmsg([b'x'])",
        "tcp": f"socket.create_connection(('127.0.0.1', {tcp_port}), timeout=2)",
        "dns": "socket.getaddrinfo('pypi.org', 443)",
        "listen": "s = socket.socket()\ns.listen()\nprint('PORT', s.getsockname())",
    }
    body = "import socket\n"
    for name, code in attempts.items():
        indented = code.replace("\n", "\n    ")
        body += f"try:\n    {indented}\n    print('SENT {name}')\nexcept OSError as e:\n"
        body += f"    print('BLOCKED {name}', e)\n"
    env = start(guard=guard)
    output = probe(env, body)
    assert all(f" {name}" in output for name in attempts), output[-2000:]  # every attempt ran
    assert "BLOCKED dns" in output and "SENT tcp" not in output, output[-2000:]
    if guard:  # the audit hook refuses sockets; without it only the namespace stands
        assert output.count("BLOCKED") == len(attempts), output[-2000:]
    udp.setblocking(False)
    tcp.setblocking(False)
    with pytest.raises(BlockingIOError):
        udp.recv(16)
    with pytest.raises(BlockingIOError):
        tcp.accept()
    udp.close()
    tcp.close()
    env.close()


# ---- 3. undecodable names; 8. tool errors as observations -----------------------------------


def test_observations_stay_valid_text_with_undecodable_file_names() -> None:
    env = start()
    output = probe(env, "open(b'made_\\xff.py', 'w').write('x = 1')\nprint('MADE')")
    assert "MADE" in output
    bad = os.fsencode(env.sandbox.repo) + b"/planted_\xff\xfe.py"  # planted on the host side
    with open(bad, "wb") as handle:
        handle.write(b"value = 1\n")
    for action in ("view .", "search value", "view tests", "run_tests"):
        observation, *_ = env.step(action)
        observation.encode("utf-8")  # no lone surrogates
        if action != "run_tests":
            assert "made_" not in observation  # a test run never changes the checkout
    observation, *_ = env.step("view .")
    assert "planted_\ufffd\ufffd.py" in observation
    env.close()


def test_failing_tools_answer_with_an_error_observation() -> None:
    env = start()
    long_name = "x" * 300
    deep = "/".join(["d"] * 3000) + "/f.py"
    actions = [
        f"view {long_name}",
        f"run_tests {long_name}",
        f"view {'y' * 255}/{'y' * 255}",
        edit_action(deep, "", "x = 1"),
        edit_action("README.md/x", "", "x = 1"),
        edit_action(f"{long_name}.py", "", "x = 1"),
    ]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        assert observation.startswith("Error") and not info["valid"], (action[:40], observation)
        assert (reward, terminated, truncated) == (0.0, False, False)
    make_chain(env.sandbox.repo, 3000)  # deeper than any path the kernel resolves (host side)
    observation, _, _, _, info = env.step("search def ")
    assert info["valid"] and "matches" in observation
    observation, _, _, _, info = env.step("view .")
    assert info["valid"] and "d/d/d/" in observation
    make_chain(env.sandbox.repo, 3000, remove=True)
    env.close()


# ---- 4. / 11. writes outside the episode without Landlock; 6. reads --------------------------

OUTSIDE_WRITES = """
import os, sqlite3
here = os.open(os.getcwd(), os.O_RDONLY)
attempts = {{
    'dir_fd': lambda: os.open('{up}{name}-dirfd', os.O_CREAT | os.O_WRONLY, dir_fd=here),
    'sqlite': lambda: sqlite3.connect('{outside}/{name}-db').execute('create table t (x)'),
    'rename': lambda: (open('moved', 'w').close(),
                       os.rename('moved', '{up}{name}-moved', dst_dir_fd=here)),
    'setxattr': lambda: os.setxattr('{outside}/existing', 'user.probe', b'1'),
    'absolute': lambda: open('{outside}/{name}-open', 'w').write('x'),
}}
for label, attempt in attempts.items():
    try:
        attempt()
        print('WROTE', label)
    except Exception as error:
        print('REFUSED', label, type(error).__name__)
"""


@pytest.mark.parametrize(
    ("isolation", "guard"), [("bwrap", True), ("bwrap", False), ("unsafe", True)]
)
def test_writes_outside_the_episode_fail_without_landlock(
    tmp_path: Path, isolation: str, guard: bool
) -> None:
    (tmp_path / "existing").write_text("x")
    env = start(isolation=isolation, landlock=False, guard=guard)
    up = "../" * 12 + str(tmp_path).lstrip("/") + "/"  # from the run's folder to tmp_path
    output = probe(env, OUTSIDE_WRITES.format(up=up, outside=tmp_path, name="probe"))
    assert output.count("REFUSED") == 5, output[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert os.listxattr(tmp_path / "existing") == []
    env.close()


@pytest.mark.parametrize("isolation", ["bwrap", "unsafe"])
def test_test_code_cannot_read_the_machine_or_import_the_project(isolation: str) -> None:
    other = start(task_index=1, isolation=isolation)
    env = start(isolation=isolation)
    source = str(Path(bwrap.__file__).parents[3])  # the folder holding the `aem` package
    body = (
        f"import sys\nsys.path[:0] = [{source!r}]\n"
        "try:\n    import aem.envs.swe.repos\n    print('IMPORTED aem')\n"
        "except Exception as error:\n    print('NO aem', type(error).__name__)\n"
        f"for path in ('/etc/passwd', {str(other.sandbox.repo / 'README.md')!r}):\n"
        "    try:\n        open(path).read()\n        print('READ', path)\n"
        "    except Exception as error:\n        print('UNREADABLE', type(error).__name__)"
    )
    output = probe(env, body)
    assert "NO aem" in output and output.count("UNREADABLE") == 2, output[-2000:]
    env.close()
    other.close()


# ---- 11. disk quota; the unprivileged user ---------------------------------------------------


def test_a_run_has_a_disk_quota_and_no_privileges() -> None:
    env = SweEnv("train", limits=Limits(wall_seconds=10.0, disk_bytes=8 << 20))
    env.reset(options={"task_index": 0})
    body = (
        "import errno, os\nwritten = 0\n"
        "try:\n"
        "    for k in range(100):\n"
        "        with open(f'fill{k}', 'wb') as handle:\n"
        "            handle.write(b'x' * (1 << 20))\n"
        "        written += 1 << 20\n"
        "except OSError as error:\n"
        "    print('STOPPED', written, errno.errorcode[error.errno])\n"
        "print('UID', os.getuid())\n"
        "try:\n    os.setuid(0)\n    print('ROOT')\nexcept OSError:\n    print('NOT ROOT')"
    )
    output = probe(env, body)
    written = int(output.split("STOPPED ")[1].split()[0])
    assert written < 8 << 20 and "ENOSPC" in output, output[-1000:]
    assert "UID 65534" in output and "NOT ROOT" in output
    assert sum(path.stat().st_size for path in env.sandbox.base.rglob("*")) < 1 << 20
    env.close()


# ---- no sandbox: refuse to start -------------------------------------------------------------


def test_without_bubblewrap_the_env_refuses_to_start_unless_unsafe_is_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bwrap.jail.cache_clear()
    monkeypatch.setattr(bwrap.shutil, "which", lambda name: None)
    try:
        with pytest.raises(SandboxUnavailableError, match="isolation='unsafe'"):
            SweEnv("train")
        env = start(isolation="unsafe")
        assert env.step("run_tests")[0].startswith("Ran ")
        env.close()
    finally:
        bwrap.jail.cache_clear()
    with pytest.raises(ValueError, match="isolation"):
        SweEnv("train", isolation="none")
