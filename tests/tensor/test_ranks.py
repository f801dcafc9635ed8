from __future__ import annotations

import math

import pytest

from trinity_lightning.tensor.ranks import full_rank, n_parameters, resolve_rank

SHAPE = (64, 32, 3, 3)


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5, 1.0])
def test_fraction_is_the_largest_rank_within_budget(factorization, fraction):
    fixed = (2, 3) if factorization == "tucker" else ()
    rank = resolve_rank(SHAPE, factorization, fraction, fixed_modes=fixed)
    used = n_parameters(SHAPE, factorization, rank)
    budget = fraction * math.prod(SHAPE)
    assert used <= budget
    assert used >= 0.75 * budget  # not wastefully below (TensorLy's own TT rounding kept ~20% at 0.5)


def test_full_rank_and_explicit_ranks():
    assert resolve_rank(SHAPE, "tucker", "full") == SHAPE
    assert resolve_rank((4, 3, 5), "tt", "full") == (1, 4, 5, 1)
    assert resolve_rank(SHAPE, "tucker", 8, fixed_modes=(2, 3)) == (8, 8, 3, 3)
    assert resolve_rank(SHAPE, "tucker", (16, 8), fixed_modes=(2, 3)) == (16, 8, 3, 3)
    assert resolve_rank((4, 3, 5), "tt", (2, 3)) == (1, 2, 3, 1)
    assert resolve_rank((4, 3, 5), "tt", 4) == (1, 4, 4, 1)
    assert full_rank((4, 3, 5), "cp") == 12
    assert resolve_rank(SHAPE, "cp", "same") == resolve_rank(SHAPE, "cp", 1.0)


@pytest.mark.parametrize(
    ("factorization", "rank", "match"),
    [
        ("tucker", (65, 32, 3, 3), "exceed the full rank"),
        ("tucker", 40, "larger than the full rank of mode"),
        ("cp", 10_000, "larger than the full rank"),
        ("tt", 1000, "larger than the full TT rank"),
        ("tt", (1, 2000, 3, 2, 1), "exceed the full rank"),
        ("cp", 1.5, r"must be in \(0, 1\]"),
        ("cp", 0.0, r"must be in \(0, 1\]"),
        ("cp", (3, 3), "CP takes a single int"),
        ("tucker", (3, 3, 3), "Tucker needs 4 ranks"),
        ("tt", (2, 2, 2, 2, 2), r"TT needs ranks \(1,"),
        ("cp", "half", "expected a float in"),
        ("cp", 0, "positive rank"),
    ],
)
def test_bad_ranks_name_the_problem(factorization, rank, match):
    with pytest.raises(ValueError, match=match):
        resolve_rank(SHAPE, factorization, rank, layer="features.0")
    with pytest.raises(ValueError, match=r"features\.0"):
        resolve_rank(SHAPE, factorization, rank, layer="features.0")


def test_unknown_factorization_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"factorization: expected one of \['cp', 'tucker', 'tt'\], got 'svd'"):
        resolve_rank(SHAPE, "svd", 0.5)
