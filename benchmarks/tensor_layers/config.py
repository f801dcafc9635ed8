"""The benchmark's settings: datasets, factorizations, rank lists, subset sizes, learning rates; paths."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1]
ROOT = BENCHMARKS.parent
for _path in (str(BENCHMARKS), str(ROOT / "src")):  # benchmarks/_results.py and the library, when run from a clone
    if _path not in sys.path:
        sys.path.insert(0, _path)


DATASETS: dict[str, dict[str, Any]] = {
    # channels / epochs chosen so the dense CNN is a reasonable small baseline and the grid fits the GPU allowance
    "cifar10": {"channels": (32, 64, 128), "image_size": 32, "in_channels": 3, "epochs": 12, "augment": True},
    "fashion_mnist": {"channels": (32, 64), "image_size": 28, "in_channels": 1, "epochs": 6, "augment": False},
}
FACTORIZATIONS = ("cp", "tucker", "tt")
# Rank lists that bracket the iso-accuracy point: from ~35x fewer head weights down to the dense head's count (TRL
# rank 1.0 = 1.0-1.2x), and from ~10x fewer network parameters down to 1.33x (net rank 0.75). The stored H100 grid of
# 2026-11-25 used TRL (0.01, 0.03, 0.1), TCL+TRL (0.05, 0.15, 0.5), net (0.1, 0.2, 0.33): its least compressed TRL
# head was already 10x smaller than the dense one and its least compressed net 3x, so it could only bound the claims.
TRL_RANKS = (0.03, 0.1, 0.2, 0.4, 0.7, 1.0)  # fraction of the dense head's weights
TCL_TRL_RANKS = (0.15, 0.5, 1.0)  # TRL fraction after a TCL halving every mode
NET_RANKS = (0.1, 0.2, 0.33, 0.5, 0.75)  # per-layer fraction for the whole-network tensorization
# `prepare`: training / test images per class drawn for the grid's .npz (what the stored grid used: CIFAR-10 15,000 /
# 3,000 and Fashion-MNIST 20,000 / 5,000 images; that its draw was stratified per class and used seed 0 is inferred,
# see prepare_data)
SUBSET_PER_CLASS = {"cifar10": (1500, 300), "fashion_mnist": (2000, 500)}
SUBSET_SEED = 0
LR, FT_LR, BATCH = 2e-3, 5e-4, 256
HEAD_GROUPS = (*(f"trl-{f}" for f in FACTORIZATIONS), "tcl")
"""The head jobs of the grid: one per TRL factorization, and the TCL + TRL heads."""
