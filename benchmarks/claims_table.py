"""The claims at a glance: a markdown table of the issues' named claims from ``benchmarks/results/*.json``.

    python benchmarks/claims_table.py           # rewrite the table in docs/index.md
    python benchmarks/claims_table.py --check   # exit 1 if docs/index.md is out of date (a test runs this)

The table sits between ``<!-- claims:start -->`` and ``<!-- claims:end -->`` in ``docs/index.md``; every figure
in it is read from a results file, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INDEX = ROOT / "docs" / "index.md"
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
# The claim ids the issues name (the contract, ../shared/docs/claims.tsv); the component pages show the others.
NAMED = (
    "mnlp_words_to_full_f1",
    "mnlp_vs_random_f1_at_20pct",
    "pool_scoring_speed_vs_baal",
    "al_loop_overhead_vs_baal",
    "alpf_erc_vs_uniform_at_30pct",
    "questions_to_full_annotation_vs_uniform",
    "ds_accuracy_vs_crowdkit",
    "ds_fit_time_vs_crowdkit",
    "mbem_vs_mv_single_label",
    "bytes_vs_fp32_allreduce_w4",
    "comm_time_vs_fp32_allreduce_w4",
    "comm_time_vs_powersgd_r4_w4",
    "accuracy_vs_sgd_allreduce",
    "byzantine_1_of_3_accuracy_delta",
    "trl_head_param_ratio_at_iso_accuracy",
    "tensorized_net_param_ratio_at_iso_accuracy",
    "maxmin_nrm_vs_ce_semisup",
    "rpn_ablation_delta",
    "landing_error_vs_nominal",
    "sn_landing_error_vs_oracle",
    "sn_extrapolation_gain",
    "learned_vs_integral_fast_descent",
    "spectral_lda_fit_time_vs_gensim_nyt",
    "spectral_lda_npmi_vs_gensim_nyt",
    "refined_lda_npmi_vs_tomotopy_nyt",
    "refined_lda_time_vs_tomotopy_nyt",
    "spectral_lda_recovery_vs_tomotopy_synthetic",
    "mnlp_vs_random_words_to_99pct_full_f1",
    "alpf_best_vs_uniform_at_30pct",
    "maxmin_nrm_vs_two_path_ce",
    "byzantine_1_of_7_accuracy_delta",
    "byzantine_3_of_7_accuracy_delta",
    "vote_vs_sgd_magnitude_attack_1_of_7",
    "step_time_vs_fp32_ddp_loopback",
    "ds_memory_vs_crowdkit_k200",
    "pool_scoring_speed_vs_baal_input_dropout",
    "cp_tensorize_time_vs_tltorch",
    "glad_accuracy_vs_crowdkit",
    "glad_fit_time_vs_crowdkit",
    "mace_accuracy_vs_crowdkit",
    "mace_fit_time_vs_crowdkit",
    "batchbald_vs_bald_acc_repeated_mnist",
    "batchbald_scoring_speed_vs_baal",
    "treelstm_vs_lstm_depth_extrapolation",
    "numeric_data_gain_depth_extrapolation",
    "treelstm_batching_speedup",
    "treelstm_throughput_vs_pytorch_tree_lstm",
    "tlstm_vs_lstm_long_horizon_genz",
    "tlstm_vs_lstm_long_horizon_etth1",
    "tlstm_vs_ridge_etth1_720",
    "tt_cell_memory_vs_full_outer_product",
)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def rows(results: Path = RESULTS) -> list[str]:
    """One markdown row per named claim found in the results, in the order of :data:`NAMED`."""
    found: dict[str, str] = {}
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):  # e.g. a running benchmark's partial file
            continue
        for claim in data.get("claims", []):
            if claim.get("id") not in NAMED:
                continue
            unit = f" {claim['unit']}" if claim.get("unit") else ""
            if claim.get("target_delta") is not None:
                value = f"{claim['delta']:+.2f}{unit}"
                target = f"≥ {claim['target_delta']:+g}"
            else:
                value = f"{claim['ratio']:.2f}x"
                target = f"≥ {claim['target']:g}x"
            met = "yes" if claim.get("met") else "**no**"
            found[claim["id"]] = (
                f"| `{claim['id']}` | {_number(claim['ours'])} vs {_number(claim['anchor'])}{unit} | {value} "
                f"| {target} | {met} | [{path.name}](../benchmarks/results/{path.name}) |"
            )
    return [found[name] for name in NAMED if name in found]


def table(results: Path = RESULTS) -> str:
    """The whole table, header included."""
    header = [
        "| claim | ours vs anchor | ratio / delta | target | met | source |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows(results))


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    if START not in text or END not in text:
        raise ValueError(f"{INDEX}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(results)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if docs/index.md is out of date")
    args = parser.parse_args(argv)
    current = INDEX.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("docs/index.md: the claims table is out of date; run python benchmarks/claims_table.py")
            return 1
        return 0
    INDEX.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
