"""Write ``benchmarks/results/<name>.json`` in the format of ``../shared/docs/results-format.md``.

Example::

    from _results import claim, write_results
    c = claim("ds_fit_time_vs_crowdkit", "Dawid-Skene fit, 1M annotations, median of 5",
              ours=0.41, anchor=5.2, unit="s", better="lower", target=10.0)
    write_results("crowd_aggregation", [c], details={...})
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU, cores, GPU, torch and python versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpu": None, "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    return info


def claim(
    id: str,
    what: str,
    *,
    ours: float,
    anchor: float,
    better: str,
    unit: str = "",
    target: float | None = None,
    target_delta: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One claim: ``ratio`` (times better than the anchor) or ``delta`` (ours - anchor) and ``met``.

    Pass ``target`` for a ratio claim, ``target_delta`` for a difference claim.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better: expected 'lower' or 'higher', got {better!r}")
    entry: dict[str, Any] = {"id": id, "what": what, "ours": ours, "anchor": anchor, "unit": unit, "better": better}
    if target_delta is not None:
        entry["delta"] = ours - anchor
        entry["target_delta"] = target_delta
        entry["met"] = bool(entry["delta"] >= target_delta)
    else:
        if ours == 0 or anchor == 0:
            ratio = float("inf") if (better == "lower" and ours == 0) or (better == "higher" and anchor == 0) else 0.0
        else:
            ratio = anchor / ours if better == "lower" else ours / anchor
        entry["ratio"] = ratio
        if target is not None:
            entry["target"] = target
            entry["met"] = bool(ratio >= target)
    entry.update(extra)
    return entry


def median(values: Sequence[float]) -> float:
    """Median of repeated measurements."""
    return float(statistics.median(values))


def write_results(
    name: str,
    claims: list[dict[str, Any]],
    details: dict[str, Any] | None = None,
    command: str | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write the results file and return its path."""
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "date": _dt.date.today().isoformat(),
        "command": command or "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "machine": machine(),
        "claims": claims,
        "details": details or {},
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    return path
