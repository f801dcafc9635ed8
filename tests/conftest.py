"""Shared test fixtures: the data folder (skip with a reason when absent) and small helpers."""

from __future__ import annotations

import os

import pytest
import torch

from trinity_lightning.data import data_root, has_dataset

# Tests are run on 2 cores: keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def require_dataset(name: str) -> None:
    """Skip the calling test with a clear reason when a shared dataset is missing."""
    if not has_dataset(name):
        pytest.skip(f"shared dataset {name!r} not found under {data_root()} (set TRINITY_DATA)")


@pytest.fixture
def shared_data():
    """The shared data folder; skips the test when it is missing."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data folder not found at {root} (set TRINITY_DATA)")
    return root


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """``Trainer(deterministic=True)`` flips a process-wide torch switch; keep it from leaking into later tests."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(before, warn_only=before_warn)
