"""Small crowd tables shared by the tests of this folder."""

from __future__ import annotations

import pandas as pd
import pytest

TOY_ROWS = [
    ("t1", "w1", "a"),
    ("t1", "w2", "a"),
    ("t1", "w3", "b"),
    ("t2", "w1", "b"),
    ("t2", "w2", "b"),
    ("t2", "w4", "b"),
    ("t3", "w1", "c"),
    ("t3", "w3", "a"),
    ("t3", "w4", "c"),
    ("t4", "w2", "a"),
    ("t4", "w3", "a"),
    ("t4", "w4", "b"),
    ("t5", "w1", "c"),
    ("t5", "w2", "c"),
    ("t5", "w3", "b"),
    ("t5", "w4", "c"),
    ("t6", "w1", "a"),
    ("t6", "w4", "a"),
    ("t7", "w2", "b"),
    ("t7", "w3", "c"),
    ("t7", "w4", "b"),
    ("t8", "w1", "a"),
    ("t8", "w3", "c"),
]


@pytest.fixture
def toy() -> pd.DataFrame:
    """8 items, 4 workers, 3 classes; crowd-kit 1.4.2's results on it are pinned in test_aggregators.py."""
    return pd.DataFrame(TOY_ROWS, columns=["task", "worker", "label"])


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run many tiny ops: one thread avoids OpenMP stalls on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
