"""``report``: grids (or a stored results file) -> claims, results file, plot and the docs' table."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .claims import build_claims, summarize
from .config import DATASETS, ROOT
from .loc import lines_of_code
from .plot import plot


def _read_latency(path: str) -> dict[str, Any]:
    """A ``latency.json`` from the latency mode, or a results file whose ``details.latency`` holds one."""
    payload = json.loads(Path(path).read_text())
    if "median_ms" in payload:
        return dict(payload)
    if "latency" in payload.get("details", {}):
        return dict(payload["details"]["latency"])
    raise ValueError(f"latency: {path} is neither a latency.json nor a results file with details.latency")


def _kept_summaries(path: Path, summaries: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Add to ``summaries`` (in place, in :data:`DATASETS` order) the datasets this grid lacks, from results ``path``.

    Returns the provenance for ``details``: which datasets were kept, the grid that measured them, and the earlier
    rows of the datasets this grid re-measured (kept for reference, never mixed into a claim: the two grids may
    differ in data subset, device and ranks).
    """
    stored = json.loads(path.read_text())["details"]
    earlier_meta = stored.get("grid_meta_by_dataset") or {ds: stored.get("grid_meta") for ds in stored["summary"]}
    kept = [ds for ds in stored["summary"] if ds not in summaries]
    replaced = {ds: rows for ds, rows in stored["summary"].items() if ds in summaries}
    merged = {**summaries, **{ds: stored["summary"][ds] for ds in kept}}
    summaries.clear()
    summaries.update({ds: merged[ds] for ds in DATASETS if ds in merged})
    return {
        "grid_meta_by_dataset": {ds: earlier_meta.get(ds) for ds in kept},
        "kept_from": {"path": os.path.relpath(path.resolve(), ROOT), "datasets": kept},
        "earlier_summary_replaced": replaced,
    }


def run_report(args: argparse.Namespace) -> None:
    from _results import write_results

    if args.from_results:  # recompute claims from a results file's stored summaries (no raw grid needed)
        stored = json.loads(Path(args.from_results).read_text())
        details = stored["details"]
        summaries = details["summary"]
        latency = details.get("latency")
        command = args.command or (
            stored["command"].split("; report --from-results")[0]
            + "; report --from-results (claims recomputed from details.summary)"
        )
    else:
        grids = [json.loads(Path(path).read_text()) for path in args.grid]  # e.g. one grid per dataset
        latency = _read_latency(args.latency) if args.latency else None
        records = []
        for grid in grids:
            if not grid["meta"].get("tucker_linear_fixed"):  # see details["tucker_linear_fix_check"]
                for r in grid["records"]:
                    if r["method"] == "tensorized" and r["factorization"] == "tucker":
                        r["method"] = "tensorized-prefix"
            records += grid["records"]
        datasets = [ds for ds in DATASETS if any(r["dataset"] == ds for r in records)]
        summaries = {ds: summarize(records, ds) for ds in datasets}
        metas = [grid["meta"] for grid in grids]
        details = {"grid_meta": metas[0] if len(metas) == 1 else metas, "summary": summaries}
        if args.keep_from:  # a grid of some datasets only: the others' summaries come from an earlier results file
            details.update(_kept_summaries(Path(args.keep_from), summaries))
        if latency:
            details["latency"] = latency
        if args.extra:
            extra = json.loads(Path(args.extra).read_text())
            details["tucker_linear_fix_check"] = {
                "meta": extra["meta"],
                "summary": {
                    ds: summarize(extra["records"], ds)
                    for ds in DATASETS
                    if any(r["dataset"] == ds for r in extra["records"])
                },
                "note": "the GPU grid above ran before the fix that keeps a Tucker-tensorized linear layer's output "
                "modes at full rank (its 'tensorized tucker' rows are the broken variant); this reduced CPU run "
                "(1 seed, subset, fewer epochs) re-measures CP/Tucker/TT after the fix",
            }
        command = args.command or (
            "; ".join(
                f"python benchmarks/tensor_layers.py {meta['argv']} ({meta['device']}, {meta['seconds']:.0f} s)"
                for meta in metas
            )
            + "; report "
            + " ".join(sys.argv[2:])
            if all(meta.get("argv") for meta in metas)
            else None
        )
    claims = build_claims(summaries, latency)
    details["lines_of_code"] = lines_of_code()
    plot_path = Path(args.plot_path) if args.plot_path else ROOT / "docs" / "img" / "tensor_tradeoff.png"
    details["plot"] = os.path.relpath(plot_path, ROOT) if plot_path.is_relative_to(ROOT) else str(plot_path)
    if not args.from_results or args.plot:
        plot(summaries, plot_path)
    results_dir = Path(args.results_dir) if args.results_dir else None
    path = write_results("tensor_layers", claims, details, command=command, results_dir=results_dir)
    print(path)
    for c in claims:
        print(c["id"], c.get("ratio"), c.get("met"), c.get("reading", ""))
    print(markdown_table(summaries))


def markdown_table(summaries: dict[str, list[dict[str, Any]]]) -> str:
    """The per-configuration table of docs/tensor.md (mean +- std over seeds), from the summaries."""
    names = {"cp": "CP", "tucker": "Tucker", "tt": "TT"}
    lines = [
        "| dataset | model | params (net) | params (head) | ratio | test acc (%) | before fine-tuning (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, rows in summaries.items():
        dense = next(r for r in rows if r["method"] == "dense")
        for r in rows:
            if r["method"] == "tensorized-prefix":
                continue
            fact, rank = names.get(str(r["factorization"]), ""), r["rank"]
            model, key = {
                "dense": ("dense CNN", "params"),
                "dense_ft": ("dense CNN + fine-tune epochs", "params"),
                "trl": (f"TRL head, {fact}, rank {rank}", "head_params"),
                "tcl+trl": (f"TCL + {fact} TRL head, rank {rank}", "head_params"),
                "tensorized": (f"`tensorize({r['factorization']!s}, {rank})` + fine-tune", "params"),
            }[r["method"]]
            before = f"{100 * r['acc_before_ft']:.1f}" if "acc_before_ft" in r else ""
            lines.append(
                f"| {ds} | {model} | {r['params']:,} | {r['head_params']:,} | {dense[key] / r[key]:.2f}x "
                f"| {100 * r['acc']:.1f} ± {100 * r['acc_std']:.1f} | {before} |"
            )
    return "\n".join(lines)
