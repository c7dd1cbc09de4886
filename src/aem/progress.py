"""Progress a user can follow in any log: plain one-line reports for pipes and files, and the
switch that keeps third-party progress bars out of them."""

from __future__ import annotations

import math
from typing import Any


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _number(record: dict[str, Any], key: str, digits: int) -> str | None:
    value = record.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{value:.{digits}f}"


def iteration_line(
    iteration: int, total: int, done: int, elapsed: float, record: dict[str, Any]
) -> str:
    """``iteration i/N  elapsed  ETA  success  held-out  entropy  weight`` for one finished
    iteration (``done`` iterations finished in this process in ``elapsed`` seconds)."""
    remaining = total - iteration - 1
    eta = format_duration(elapsed / done * remaining) if done else "unknown"
    parts = [
        f"iteration {iteration + 1}/{total}",
        f"elapsed {format_duration(elapsed)}",
        f"ETA {eta}",
    ]
    fields = (
        ("success", "rollout/success", 3),
        ("held-out", "eval/success", 3),
        ("entropy", "entropy/response_mean", 3),
    )
    for label, key, digits in fields:
        value = _number(record, key, digits)
        if value is not None:
            parts.append(f"{label} {value}")
    for prefix in ("aem", "empg"):
        name = "weight" if prefix == "aem" else "scale"
        low = _number(record, f"{prefix}/{name}_min", 2)
        high = _number(record, f"{prefix}/{name}_max", 2)
        if low is not None and high is not None:
            parts.append(f"{prefix.upper()} {name} {low}-{high}")
    return "  ".join(parts)


def quiet_third_party_progress(verbose: bool) -> None:
    """Silence the progress bars of transformers and huggingface_hub (shard writing, downloads)
    inside our runs, unless ``verbose``."""
    if verbose:
        return
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
