"""Linear-time integer helpers for building the annotation table and its incidence matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd


def radix_argsort(keys: np.ndarray, key_range: int) -> np.ndarray | None:
    """Stable argsort of non-negative integer ``keys < key_range``; ``None`` when already sorted.

    Keys below 2**32 take one or two 16-bit passes of NumPy's stable sort, which is a radix sort
    for 16-bit keys (O(N)): ~10x faster than ``torch.argsort(stable=True)`` at 1M keys.

    Example:
        >>> radix_argsort(np.array([3, 1, 70000, 1]), 70001).tolist()
        [1, 3, 0, 2]
    """
    if len(keys) < 2 or not (keys[1:] < keys[:-1]).any():
        return None
    if key_range > 2**32:
        return np.argsort(keys, kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if key_range > 2**16:
        order = order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    return order


def factorize(values: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Codes and uniques, sorted when the values are mutually comparable (else in order of appearance).

    Non-negative integers of a modest range are encoded with a ``bincount`` (O(N), no hashing).

    Example:
        >>> codes, uniques = factorize(np.array([7, 3, 7]))
        >>> codes.tolist(), list(uniques)
        ([1, 0, 1], [3, 7])
    """
    if values.dtype.kind in "iu" and len(values):
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high <= 4 * len(values) + 1024:
            present = np.bincount(values, minlength=high + 1) > 0
            remap = np.cumsum(present) - 1
            return remap[values].astype(np.int64), pd.Index(np.flatnonzero(present).astype(values.dtype))
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), pd.Index(uniques)
