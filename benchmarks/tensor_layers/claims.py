"""From grid records to per-configuration summaries and the iso-accuracy / latency claims."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import FACTORIZATIONS


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else 0.0


def summarize(records: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        if r["dataset"] == dataset:
            groups.setdefault((r["method"], r["factorization"], r["rank"]), []).append(r)
    rows = []
    for (method, fact, rank), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2] or 0)):
        acc, acc_sd = _mean_std([r["acc"] for r in rs])
        row = {
            "method": method,
            "factorization": fact,
            "rank": rank,
            "seeds": len(rs),
            "acc": acc,
            "acc_std": acc_sd,
            "params": int(np.mean([r["params"] for r in rs])),
            "head_params": int(np.mean([r["head_params"] for r in rs])),
            "per_seed_acc": [round(r["acc"], 4) for r in sorted(rs, key=lambda r: r["seed"])],
        }
        if "acc_before_ft" in rs[0]:
            row["acc_before_ft"] = float(np.mean([r["acc_before_ft"] for r in rs]))
        rows.append(row)
    return rows


def _label(row: dict[str, Any]) -> str:
    return f"{row['method']} {row['factorization']} rank={row['rank']}"


def _point(row: dict[str, Any], anchor: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "config": _label(row),
        "ratio": anchor[key] / row[key],
        "acc": row["acc"],
        "drop_points": 100 * (anchor["acc"] - row["acc"]),
    }


def iso_ratio(
    rows: list[dict[str, Any]], methods: tuple[str, ...], anchor: dict[str, Any], key: str, tolerance: float
) -> tuple[float, dict[str, Any] | None]:
    """Largest ``anchor[key] / row[key]`` among rows whose mean accuracy is within ``tolerance`` points of the anchor.

    ``(1.0, None)`` when no row qualifies: the anchor (dense) model itself is then the only iso-accuracy model.
    """
    best, best_row = 1.0, None
    for row in rows:
        if row["method"] in methods and row["acc"] >= anchor["acc"] - tolerance / 100:
            ratio = anchor[key] / row[key]
            if ratio > best:
                best, best_row = ratio, row
    return best, best_row


def at_target(
    rows: list[dict[str, Any]], methods: tuple[str, ...], anchor: dict[str, Any], key: str, target: float
) -> dict[str, Any] | None:
    """The most accurate row compressing at least ``target`` times, with its accuracy drop (points)."""
    hits = [r for r in rows if r["method"] in methods and anchor[key] / r[key] >= target]
    if not hits:
        return None
    return _point(max(hits, key=lambda r: r["acc"]), anchor, key)


def iso_claim(
    claim_id: str,
    what: str,
    rows: list[dict[str, Any]],
    methods: tuple[str, ...],
    anchor: dict[str, Any],
    key: str,
    tolerance: float,
    target: float | None = None,
) -> dict[str, Any]:
    """A "parameter ratio at iso-accuracy" claim that says plainly when no configuration was within tolerance.

    ``ours`` is the parameter count of the most compressed configuration within ``tolerance`` points of the anchor,
    or the anchor's own count when there is none (ratio 1.0: only the dense model is "iso-accurate"). A 1.0 is
    then not a measured ratio, so the claim also carries ``within_tolerance`` (empty), the ``closest`` (most
    accurate) configuration, the range of compressions the grid tested, and a one-line ``reading``.
    """
    from _results import claim

    candidates = [r for r in rows if r["method"] in methods]
    ratio, chosen = iso_ratio(rows, methods, anchor, key, tolerance)
    within = sorted(
        (_point(r, anchor, key) for r in candidates if r["acc"] >= anchor["acc"] - tolerance / 100),
        key=lambda point: -point["ratio"],
    )
    closest = _point(max(candidates, key=lambda r: r["acc"]), anchor, key) if candidates else None
    ratios = [anchor[key] / r[key] for r in candidates]
    tested = [min(ratios), max(ratios)] if ratios else None
    if chosen is None:
        reading = (
            f"no configuration came within {tolerance} pt of the anchor's {100 * anchor['acc']:.1f}%"
            + (
                f" (the most accurate, {closest['config']}, is {closest['drop_points']:.1f} pt below at "
                f"{closest['ratio']:.1f}x)"
                if closest
                else ""
            )
            + "; ratio 1.0 is the dense model itself, not a measured ratio"
            + (
                ""
                if not tested
                else f". The grid tested {tested[0]:.2f}x-{tested[1]:.1f}x, down to about the dense size, so within "
                f"this tolerance no compression keeps the accuracy here"
                if tested[0] < 1.1
                else f". The grid tested {tested[0]:.1f}x-{tested[1]:.1f}x only, so if accuracy rises with parameters "
                f"an iso-accuracy configuration compresses less than {tested[0]:.1f}x (not measured)"
            )
        )
    else:
        point = _point(chosen, anchor, key)
        reading = (
            f"{point['config']}: {point['ratio']:.2f}x fewer parameters at {100 * point['acc']:.1f}% "
            f"({abs(point['drop_points']):.2f} pt {'below' if point['drop_points'] >= 0 else 'above'} the anchor, "
            f"tolerance {tolerance})"
        )
        if target is not None:
            reading += "; target met" if ratio >= target else f"; under the {target:g}x target"
    extra: dict[str, Any] = {
        "chosen": chosen,
        "dense_acc": anchor["acc"],
        "tolerance_points": tolerance,
        "within_tolerance": within,
        "closest": closest,
        "tested_ratio_range": tested,
        "reading": reading,
    }
    if target is not None:
        extra["best_at_target"] = at_target(rows, methods, anchor, key, target)
    return claim(
        claim_id,
        what,
        ours=chosen[key] if chosen else anchor[key],
        anchor=anchor[key],
        better="lower",
        unit="params",
        target=target,
        **extra,
    )


NO_CONFIG = "; ratio 1.0 when no configuration is within tolerance (the dense model itself; see reading)"


def build_claims(summaries: dict[str, list[dict[str, Any]]], latency: dict[str, Any] | None) -> list[dict[str, Any]]:
    """All claims from the per-config summaries (see :func:`summarize`) and the latency measurement."""
    claims = []
    for ds, rows in summaries.items():
        dense = next(r for r in rows if r["method"] == "dense")
        dense_ft = next((r for r in rows if r["method"] == "dense_ft"), dense)
        suffix = "" if ds == "cifar10" else f"_{ds}"
        seeds = dense["seeds"]
        trl_facts = "/".join(
            {"cp": "CP", "tucker": "Tucker", "tt": "TT"}[f]
            for f in FACTORIZATIONS
            if any(r["method"] == "trl" and r["factorization"] == f for r in rows)
        )
        claims.append(
            iso_claim(
                f"trl_head_param_ratio_at_iso_accuracy_small_head{suffix}",
                f"{ds}: dense flatten+Linear head params / TRL head params, most compressed TRL ({trl_facts}, "
                f"{len({r['rank'] for r in rows if r['method'] == 'trl'})} ranks) with mean test acc within 0.5 pt "
                f"of the dense CNN ({seeds} seeds)" + NO_CONFIG,
                rows,
                ("trl",),
                dense,
                "head_params",
                0.5,
                target=10.0,
            )
        )
        if any(r["method"] == "tcl+trl" for r in rows):  # a CPU grid may skip the TCL heads (--head-groups)
            claims.append(
                iso_claim(
                    f"tcl_trl_head_param_ratio_at_iso_accuracy_small_head{suffix}",
                    f"{ds}: dense head params / TCL+TRL (Tucker) head params within 0.5 pt of dense" + NO_CONFIG,
                    rows,
                    ("tcl+trl",),
                    dense,
                    "head_params",
                    0.5,
                )
            )
        facts = sorted({str(r["factorization"]) for r in rows if r["method"] == "tensorized"}, key=FACTORIZATIONS.index)
        n_ranks = len({r["rank"] for r in rows if r["method"] == "tensorized"})
        excluded = (
            " (this grid's Tucker rows ran before the Tucker-linear fix and are excluded; see "
            "details.tucker_linear_fix_check)"
            if any(r["method"] == "tensorized-prefix" for r in rows)
            else ""
        )
        claims.append(
            iso_claim(
                f"tensorized_net_param_ratio_at_iso_accuracy_small_cnn{suffix}",
                f"{ds}: whole-network params, dense CNN / tensorize()d CNN (decomposed from the trained "
                f"dense weights, fine-tuned), most compressed of {'/'.join(f.upper() for f in facts)} x {n_ranks} "
                f"ranks{excluded} within 1.0 pt of the dense CNN fine-tuned for the same extra epochs "
                f"({seeds} seeds)" + NO_CONFIG,
                rows,
                ("tensorized",),
                dense_ft,
                "params",
                1.0,
                target=3.0,
            )
        )
    if latency:
        from _results import claim

        med = latency["median_ms"]
        for batch in ("256", "1"):
            claims.append(
                claim(
                    f"tensorized_latency_b{batch}",
                    f"CPU inference latency, batch {batch}, CIFAR CNN dense / tensorize(tucker, "
                    f"rank={latency['rank']}) ({latency['threads']} thread(s), median of "
                    f"{latency['rounds']} interleaved rounds); ratio > 1 means the tensorized net is faster",
                    ours=med["tensorized_tucker"][batch],
                    anchor=med["dense"][batch],
                    better="lower",
                    unit="ms",
                )
            )
    return claims
