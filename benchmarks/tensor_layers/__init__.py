"""The tensor benchmark (accuracy vs parameters, CPU latency, lines of code vs tltorch by hand), one job per module.

Run it through ``python benchmarks/tensor_layers.py {prepare,grid,latency,report}`` (usage in :mod:`.cli`).

| module | job |
|---|---|
| ``config`` | datasets, factorizations, rank lists, subset sizes, learning rates, paths |
| ``data`` | ``prepare``: the grid's seeded class-stratified ``.npz``; reading it back as tensors |
| ``training`` | the train / evaluate loop of every grid job |
| ``grid`` | ``grid``: dense / TRL / TCL+TRL heads / tensorized nets, per seed, in a process pool with a time budget |
| ``latency`` | ``latency``: CPU inference latency, dense vs tensorized |
| ``loc`` | the tltorch-by-hand vs ``tensorize()`` functions shown in docs/tensor.md, and their line counts |
| ``claims`` | grid records -> per-configuration summaries -> iso-accuracy and latency claims |
| ``plot`` | the accuracy-vs-parameters figure |
| ``report`` | ``report``: claims + results file + plot + the docs' table |
| ``cli`` | the command line |
"""

from __future__ import annotations

from .claims import NO_CONFIG, at_target, build_claims, iso_claim, iso_ratio, summarize
from .cli import main, run_prepare
from .config import (
    BATCH,
    DATASETS,
    FACTORIZATIONS,
    FT_LR,
    HEAD_GROUPS,
    LR,
    NET_RANKS,
    ROOT,
    SUBSET_PER_CLASS,
    SUBSET_SEED,
    TCL_TRL_RANKS,
    TRL_RANKS,
)
from .data import (
    _data_meta,
    _decode_jpegs,
    download_wheels,
    load_arrays,
    parse_sizes,
    prepare_data,
    to_tensors,
)
from .grid import _job_cost, _worker, run_grid
from .latency import run_latency
from .loc import _lines, by_hand_tltorch, lines_of_code, with_trinity
from .plot import plot
from .report import markdown_table, run_report
from .training import accuracy, head_params, n_params, train

__all__ = [
    "BATCH",
    "DATASETS",
    "FACTORIZATIONS",
    "FT_LR",
    "HEAD_GROUPS",
    "LR",
    "NET_RANKS",
    "NO_CONFIG",
    "ROOT",
    "SUBSET_PER_CLASS",
    "SUBSET_SEED",
    "TCL_TRL_RANKS",
    "TRL_RANKS",
    "_data_meta",
    "_decode_jpegs",
    "_job_cost",
    "_lines",
    "_worker",
    "accuracy",
    "at_target",
    "build_claims",
    "by_hand_tltorch",
    "download_wheels",
    "head_params",
    "iso_claim",
    "iso_ratio",
    "lines_of_code",
    "load_arrays",
    "main",
    "markdown_table",
    "n_params",
    "parse_sizes",
    "plot",
    "prepare_data",
    "run_grid",
    "run_latency",
    "run_prepare",
    "run_report",
    "summarize",
    "to_tensors",
    "train",
    "with_trinity",
]
