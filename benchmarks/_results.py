"""Write ``benchmarks/results/<name>.json`` in the format of ``../shared/docs/results-format.md``.

Every file a benchmark writes (results, per-job records, partial runs) goes through :func:`write_json`, the one
atomic writer of ``benchmarks/``: a crash mid-write leaves the previous file, never half a file.

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
import re
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU, cores, GPU, torch and python versions, torch's thread count and the load average of this machine.

    ``load_average`` is ``os.getloadavg()`` (1, 5 and 15 minutes) when the file is written: on a shared machine it
    says how busy the cores were while the figures were measured.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpu": None, "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(value, 2) for value in os.getloadavg()]
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
    inline_number_lists: bool = False,
) -> Path:
    """Write the results file and return its path (``inline_number_lists``: see :func:`write_json`)."""
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "date": _dt.date.today().isoformat(),
        "command": command or command_line(),
        "machine": machine(),
        "claims": claims,
        "details": details or {},
    }
    return write_json(out_dir / f"{name}.json", payload, inline_number_lists=inline_number_lists)


def command_line() -> str:
    """The command that runs this script, as a results file records it (``python benchmarks/x.py --flag``)."""
    return "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])


# A list of numbers as ``json.dumps(indent=...)`` writes it: "[", then one number per line, then "]". Strings
# cannot hold a raw newline, so this never matches inside one.
_NUMBER = r"-?(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|Infinity|NaN)"
_NUMBER_LIST = re.compile(r"\[\n\s*(" + _NUMBER + r"(?:,\n\s*" + _NUMBER + r")*)\n\s*\]")


def write_json(path: Path, payload: Any, indent: int | None = 2, inline_number_lists: bool = False) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file in the same folder, then a rename).

    Numbers that JSON does not know (numpy and torch scalars) are written as floats. ``inline_number_lists``
    writes each list of plain numbers on one line (per-step curves: a file a third the size, still readable and
    diffable line by line; the values are unchanged). Returns ``path``.

    Example::

        write_json(Path("benchmarks/results/alpf_jobs/alpf_partial_cifar10_s0.json"), job, indent=None)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=indent, default=float) + "\n"
    if inline_number_lists and indent is not None:
        text = _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_results(name: str, results_dir: Path | None = None) -> dict[str, Any]:
    """The stored results file ``<results_dir>/<name>.json`` (to add details to it and write it back)."""
    path = (results_dir or RESULTS_DIR) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; run the benchmark first")
    return dict(json.loads(path.read_text()))
