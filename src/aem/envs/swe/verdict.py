"""The hidden verdict, decided in the trusted parent process.

The sandboxed runner (:mod:`aem.envs.swe.runner`) calls each hidden case's function on the
agent's code and *claims* an outcome per case: a value in the runner's tagged encoding, or the
name of the exception raised. Those claims come from a process the agent's code controls, so
they are parsed as plain data only (no ``eval``, no unpickling, bounded depth) and compared here
with the expected outcomes, which never leave this process. A claim that cannot be parsed, or a
report of the wrong length, counts as failed: forging the report can only give outcomes the
agent's code could have computed itself.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from aem.envs.swe.repos import HiddenCase, Outcome, same_outcome

_MAX_DEPTH = 60
_KINDS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class Opaque:
    """A claimed value of a type the encoding does not carry: equal to nothing."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(self.type_name)

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


def decode(data: Any, depth: int = 0) -> Any:
    """The value of one tagged item of :func:`aem.envs.swe.runner.encode`; ``ValueError`` or
    ``TypeError`` when malformed."""
    if depth > _MAX_DEPTH or not isinstance(data, list) or not data:
        raise ValueError("malformed value")
    tag, body = data[0], data[1] if len(data) > 1 else None
    if tag == "none":
        return None
    if tag == "bool" and isinstance(body, bool):
        return body
    if tag == "int" and isinstance(body, str):
        return int(body)
    if tag == "float" and isinstance(body, str):
        return float(body)
    if tag == "str" and isinstance(body, str):
        return body
    if tag == "bytes" and isinstance(body, str):
        return base64.b64decode(body, validate=True)
    if tag == "dict" and isinstance(body, list):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    if tag in _KINDS and isinstance(body, list):
        return _KINDS[tag](decode(item, depth + 1) for item in body)
    if tag == "other" and isinstance(body, str):
        return Opaque(body)
    raise ValueError(f"malformed value tagged {tag!r}")


def claimed_outcome(item: Any) -> Outcome | None:
    """One claimed outcome as ``("value", v)`` / ``("raises", name)``; None when malformed."""
    if not isinstance(item, list) or len(item) != 2:
        return None
    kind, body = item
    if kind == "raises" and isinstance(body, str):
        return ("raises", body)
    if kind != "value":
        return None
    try:
        return ("value", decode(body))
    except (ValueError, TypeError, RecursionError):
        return None


def count_passed(cases: Sequence[HiddenCase], report: Any) -> int | None:
    """How many ``cases`` the claimed ``report["outcomes"]`` get right (as the generator judged
    triggering cases: :func:`~aem.envs.swe.repos.same_outcome`); None if the report does not
    hold one outcome per case."""
    outcomes = report.get("outcomes") if isinstance(report, dict) else None
    if not isinstance(outcomes, list) or len(outcomes) != len(cases):
        return None
    passed = 0
    for case, item in zip(cases, outcomes, strict=True):
        claimed = claimed_outcome(item)
        passed += claimed is not None and same_outcome(case.expected, claimed)
    return passed
