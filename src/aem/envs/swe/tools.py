"""The agent's tools: the action grammar and the file tools, confined to the repository folder.

Grammar (one action per step; paths are relative to the repository root)::

    view <path> [start end]      a file with line numbers (lines start..end, end -1 = last),
                                 or a folder's tree
    search <text>                every line containing <text> (exact, case-sensitive)
    edit <path>                  replace the exact OLD text (which must occur exactly once)
    <<<<<<< OLD                  by the NEW text; an empty OLD creates a new file
    ...
    =======
    ...
    >>>>>>> NEW
    run_tests [path]             the visible tests (folder or file; default tests/)
    submit                       end the episode; the hidden tests decide the reward

Any path that resolves outside the repository (``..``, absolute paths, symlinks) is refused, and
so are paths longer than ``MAX_PATH_CHARS`` or deeper than ``MAX_PATH_DEPTH`` folders; listings
and searches stop after ``MAX_TREE_ENTRIES`` entries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TOOL_TEMPLATES: tuple[str, ...] = (
    "view <path> [start end]",
    "search <text>",
    "edit <path>\n<<<<<<< OLD\n<exact old text>\n=======\n<new text>\n>>>>>>> NEW",
    "run_tests [path]",
    "submit",
)
"""The grammar's templates (``info["admissible_commands"]``)."""

OLD_MARKER, MIDDLE_MARKER, NEW_MARKER = "<<<<<<< OLD", "=======", ">>>>>>> NEW"
MAX_FILE_BYTES = 1 << 20
MAX_SEARCH_MATCHES = 50
MAX_PATH_CHARS = 512
MAX_PATH_DEPTH = 16
MAX_TREE_ENTRIES = 5000
_SKIPPED_NAMES = ("__pycache__",)


class ToolError(ValueError):
    """An action the tools cannot carry out; the message is shown to the agent."""


@dataclass(frozen=True)
class ToolCall:
    """A parsed action. ``start``/``end`` only for ``view``; ``old``/``new`` only for ``edit``."""

    name: str
    path: str = ""
    text: str = ""
    start: int | None = None
    end: int | None = None
    old: str = ""
    new: str = ""


def edit_action(path: str, old: str, new: str) -> str:
    """The ``edit`` action replacing ``old`` by ``new`` in ``path``."""
    return f"edit {path}\n{OLD_MARKER}\n{old}\n{MIDDLE_MARKER}\n{new}\n{NEW_MARKER}"


def parse_action(action: str) -> ToolCall:
    """Parse one action; raises :class:`ToolError` with a usage message when malformed."""
    text = action.replace("\r\n", "\n").strip()
    if not text:
        raise ToolError("Error: empty action. " + _usage())
    first, _, rest = text.partition("\n")
    words = first.split()
    name, args = words[0], words[1:]
    if name == "edit":
        return _parse_edit(args, rest)
    if rest.strip():
        raise ToolError(f"Error: `{name}` takes a single line. " + _usage())
    if name == "view":
        return _parse_view(args)
    if name == "search":
        query = first[len("search") :].strip()
        if not query:
            raise ToolError("Error: usage: search <text>")
        return ToolCall("search", text=query)
    if name == "run_tests":
        if len(args) > 1:
            raise ToolError("Error: usage: run_tests [path]")
        return ToolCall("run_tests", path=args[0] if args else "tests")
    if name == "submit":
        if args:
            raise ToolError("Error: usage: submit (no arguments)")
        return ToolCall("submit")
    raise ToolError(f"Error: unknown tool {name!r}. " + _usage())


def _usage() -> str:
    return "Tools: view <path> [start end] | search <text> | edit <path> + OLD/NEW block | " \
        "run_tests [path] | submit."  # fmt: skip


def _parse_view(args: list[str]) -> ToolCall:
    if len(args) not in (1, 3):
        raise ToolError("Error: usage: view <path> [start end]")
    if len(args) == 1:
        return ToolCall("view", path=args[0])
    try:
        start, end = int(args[1]), int(args[2])
    except ValueError:
        raise ToolError("Error: view start and end must be integers (end -1 = last line)") from None
    return ToolCall("view", path=args[0], start=start, end=end)


def _parse_edit(args: list[str], body: str) -> ToolCall:
    if len(args) != 1:
        raise ToolError("Error: usage: edit <path>, then the OLD/NEW block on the next lines")
    lines = body.split("\n")
    markers = [line.rstrip() for line in lines]
    if not lines or markers[0] != OLD_MARKER or markers[-1] != NEW_MARKER:
        raise ToolError(
            f"Error: an edit needs the lines `{OLD_MARKER}`, old text, `{MIDDLE_MARKER}`, "
            f"new text, `{NEW_MARKER}` after `edit <path>`."
        )
    try:
        middle = markers.index(MIDDLE_MARKER, 1, len(lines) - 1)
    except ValueError:
        raise ToolError(f"Error: the edit block has no `{MIDDLE_MARKER}` line.") from None
    old = "\n".join(lines[1:middle])
    new = "\n".join(lines[middle + 1 : -1])
    return ToolCall("edit", path=args[0], old=old, new=new)


def failure_message(call: ToolCall, error: BaseException) -> str:
    """The observation for a tool that failed on the file system (no host paths in it)."""
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = type(error).__name__
    target = f" on {call.path}" if call.path else ""
    return f"Error: {call.name}{target} failed: {reason}."


def resolve(root: Path, path: str) -> Path:
    """``path`` inside ``root`` with symlinks and ``..`` resolved; :class:`ToolError` outside,
    or when too long or too deep."""
    if not path or "\0" in path:
        raise ToolError(f"Error: invalid path {path!r}.")
    if len(path) > MAX_PATH_CHARS or path.count("/") >= MAX_PATH_DEPTH:
        raise ToolError(
            f"Error: paths are limited to {MAX_PATH_CHARS} characters and {MAX_PATH_DEPTH} levels."
        )
    real_root = Path(os.path.realpath(root))
    full = Path(os.path.realpath(real_root / path))
    if full != real_root and real_root not in full.parents:
        raise ToolError(f"Error: path {path!r} is outside the repository.")
    return full


def relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators."""
    return path.relative_to(os.path.realpath(root)).as_posix() or "."


def view(root: Path, path: str, start: int | None = None, end: int | None = None) -> str:
    """A numbered file listing (lines ``start..end``) or a folder tree (3 levels)."""
    full = resolve(root, path)
    if full.is_dir():
        if start is not None:
            raise ToolError("Error: a line range only applies to files.")
        entries = _tree(full, depth=3)
        return f"Files under {relative(root, full)}:\n" + "\n".join(
            relative(root, entry) + ("/" if entry.is_dir() else "") for entry in entries
        )
    lines = _read_text(root, full).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first, last = 1, len(lines)
    if start is not None and end is not None:
        if not 1 <= start <= max(last, 1) or (end != -1 and end < start):
            raise ToolError(
                f"Error: invalid line range [{start}, {end}] for a file of {last} lines."
            )
        first, last = start, last if end == -1 else min(end, last)
    numbered = [f"{number:6d}\t{lines[number - 1]}" for number in range(first, last + 1)]
    return f"{relative(root, full)} (lines {first}-{last} of {len(lines)}):\n" + "\n".join(numbered)


def search(root: Path, text: str) -> str:
    """Every line of every repository text file containing ``text``."""
    matches = []
    for entry in _tree(resolve(root, "."), depth=None):
        if not entry.is_file():
            continue
        try:
            content = _read_text(root, entry)
        except ToolError:
            continue
        for number, line in enumerate(content.split("\n"), start=1):
            if text in line:
                matches.append(f"{relative(root, entry)}:{number}: {line.strip()}")
    if not matches:
        return f"No matches for {text!r}."
    shown = matches[:MAX_SEARCH_MATCHES]
    more = len(matches) - len(shown)
    tail = f"\n[{more} more matches not shown]" if more else ""
    return f"{len(matches)} matches for {text!r}:\n" + "\n".join(shown) + tail


def edit(root: Path, path: str, old: str, new: str) -> str:
    """Replace the unique occurrence of ``old`` by ``new`` (or create the file if ``old`` is
    empty and the file does not exist); returns the edited region with line numbers."""
    full = resolve(root, path)
    if old == "":
        if full.exists():
            raise ToolError(
                f"Error: OLD is empty but {path} exists; give the exact text to replace."
            )
        folder = full.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise ToolError(f"Error: {relative(root, folder)} is a file, not a folder.")
        full.parent.mkdir(parents=True, exist_ok=True)
        _write_text(full, new, create=True)
        return f"Created {relative(root, full)} ({len(new.splitlines())} lines)."
    content = _read_text(root, full)
    count = content.count(old)
    if count == 0:
        raise ToolError(
            f"Error: the OLD text was not found in {path}; it must match exactly, "
            f"including indentation (use view to copy it)."
        )
    if count > 1:
        raise ToolError(
            f"Error: the OLD text occurs {count} times in {path}; include more surrounding "
            f"lines to make it unique."
        )
    position = content.index(old)
    _write_text(full, content.replace(old, new, 1), create=False)
    first = content.count("\n", 0, position) + 1
    last = first + new.count("\n")
    shown = view(root, path, max(first - 2, 1), last + 2)
    return f"Edited {relative(root, full)}. " + shown


def _tree(folder: Path, depth: int | None) -> list[Path]:
    """Entries under ``folder`` in depth-first sorted order (hidden names and caches skipped, no
    link following, unreadable folders left out), at most ``depth`` levels (None:
    ``MAX_PATH_DEPTH``) and ``MAX_TREE_ENTRIES`` entries."""
    depth = MAX_PATH_DEPTH if depth is None else depth
    found: list[Path] = []
    pending = [(entry, 1) for entry in reversed(_children(folder))]  # a stack: last = next
    while pending and len(found) < MAX_TREE_ENTRIES:
        entry, level = pending.pop()
        found.append(entry)
        if level < depth and entry.is_dir() and not entry.is_symlink():
            pending += [(child, level + 1) for child in reversed(_children(entry))]
    return found


def _children(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted(e for e in entries if not e.name.startswith(".") and e.name not in _SKIPPED_NAMES)


def _read_text(root: Path, full: Path) -> str:
    """The UTF-8 text of ``full``; a symlink is followed only if it stays inside ``root``."""
    real = resolve(root, relative(root, full)) if full.is_symlink() else full
    if not real.is_file():
        raise ToolError(f"Error: {relative(root, full)} is not a file.")
    if real.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"Error: {relative(root, full)} is larger than {MAX_FILE_BYTES} bytes.")
    try:
        return real.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"Error: {relative(root, full)} is not a UTF-8 text file.") from None


def _write_text(full: Path, text: str, *, create: bool) -> None:
    """Write without following a final symlink and never through a hard link."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
    descriptor = os.open(full, flags, 0o644)
    try:
        if os.fstat(descriptor).st_nlink > 1:
            raise ToolError(f"Error: {full.name} has several hard links; refusing to edit it.")
        os.ftruncate(descriptor, 0)
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(descriptor, data) :]
    finally:
        os.close(descriptor)
