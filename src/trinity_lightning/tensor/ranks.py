"""Rank resolution: a fraction of the dense parameters, ``"full"``, or explicit ranks -> explicit ranks.

TensorLy's own float-rank helpers round each factorization differently (a TT "rank=0.5" of a 3x3 conv kernel keeps
about 20% of the parameters, a Tucker one may put rank 1 on a mode), so the fraction is resolved here, by
bisection, to the largest ranks whose parameter count does not exceed ``fraction * dense``. Explicit ranks are
checked against the full rank of each mode, which tltorch does not do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

Rank: TypeAlias = float | int | str | Sequence[int]
"""A rank: a float in (0, 1] (fraction of dense parameters), an int, a tuple of ints, or ``"full"``."""

FACTORIZATIONS = ("cp", "tucker", "tt")


def normalize_factorization(factorization: str) -> str:
    """Lower-case name checked against :data:`FACTORIZATIONS`.

    Example:
        >>> normalize_factorization("Tucker")
        'tucker'
    """
    name = str(factorization).lower()
    if name not in FACTORIZATIONS:
        raise ValueError(f"factorization: expected one of {list(FACTORIZATIONS)}, got {factorization!r}")
    return name


_RANK_FORMS = "a float in (0, 1], 'full', a positive int or a list of positive ints"


def check_rank(rank: object, factorization: str, argument: str = "rank") -> Rank:
    """Check a user rank without a model (what ``Tensorize`` does when it is constructed); return it normalized.

    Shape-dependent checks (a rank above a layer's full rank) need the layer: :func:`resolve_rank` does them.

    Args:
        rank: the rank as given (from Python or a YAML recipe).
        factorization: ``"cp"``, ``"tucker"`` or ``"tt"`` (CP takes a single rank).
        argument: the argument name used in error messages.

    Raises:
        ValueError: naming ``argument``, for a float outside (0, 1], an unknown string, a non-positive int, ...

    Example:
        >>> check_rank([1, 4, 1], "tt")
        (1, 4, 1)
        >>> check_rank(-0.5, "tucker")
        Traceback (most recent call last):
        ...
        ValueError: rank: a float rank is a fraction of the dense parameters and must be in (0, 1], got -0.5. \
HINT: use rank='full' (or explicit ranks) for no compression.
    """
    name = normalize_factorization(factorization)
    if isinstance(rank, str):
        if rank in ("full", "same"):
            return rank
        raise ValueError(f"{argument}: expected {_RANK_FORMS}, got {rank!r}")
    if isinstance(rank, bool):
        raise ValueError(f"{argument}: expected {_RANK_FORMS}, got {rank!r}")
    if isinstance(rank, float):
        if not 0.0 < rank <= 1.0:  # also NaN
            raise ValueError(
                f"{argument}: a float rank is a fraction of the dense parameters and must be in (0, 1], got "
                f"{rank}. HINT: use rank='full' (or explicit ranks) for no compression."
            )
        return rank
    if isinstance(rank, int):
        if rank < 1:
            raise ValueError(f"{argument}: expected a positive rank, got {rank}")
        return rank
    if isinstance(rank, Sequence) and rank:
        if name == "cp":
            raise ValueError(f"{argument}: CP takes a single int rank, got {list(rank)!r}")
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rank):
            raise ValueError(f"{argument}: expected positive ints, got {list(rank)!r}")
        return tuple(rank)
    raise ValueError(f"{argument}: expected {_RANK_FORMS}, got {rank!r}")


def tt_max_ranks(shape: Sequence[int]) -> tuple[int, ...]:
    """Largest useful TT ranks ``(1, r_1, ..., r_{N-1}, 1)`` of a tensor of this shape.

    Example:
        >>> tt_max_ranks((4, 3, 5))
        (1, 4, 5, 1)
    """
    n = len(shape)
    inner = [min(math.prod(shape[:k]), math.prod(shape[k:])) for k in range(1, n)]
    return (1, *inner, 1)


def full_rank(shape: Sequence[int], factorization: str) -> int | tuple[int, ...]:
    """The rank at which the factorization can represent any tensor of ``shape`` exactly.

    For CP it is the generic upper bound ``prod(shape) // max(shape)``.

    Example:
        >>> full_rank((8, 4, 3, 3), "tucker"), full_rank((8, 4, 3, 3), "cp")
        ((8, 4, 3, 3), 36)
    """
    name = normalize_factorization(factorization)
    if name == "cp":
        return math.prod(shape) // max(shape)
    if name == "tucker":
        return tuple(int(s) for s in shape)
    return tt_max_ranks(shape)


def n_parameters(shape: Sequence[int], factorization: str, rank: int | Sequence[int]) -> int:
    """Parameters of a factorized tensor of ``shape`` at an explicit ``rank``.

    Example:
        >>> n_parameters((8, 4, 3, 3), "cp", 2)
        38
    """
    name = normalize_factorization(factorization)
    if name == "cp":
        assert isinstance(rank, int)
        return rank * (sum(shape) + 1)
    ranks = list(rank)  # type: ignore[arg-type]
    if name == "tucker":
        return math.prod(ranks) + sum(s * r for s, r in zip(shape, ranks))
    return sum(ranks[k] * shape[k] * ranks[k + 1] for k in range(len(shape)))


def _where(layer: str) -> str:
    return f" for layer {layer!r}" if layer else ""


def _tucker_ranks(shape: Sequence[int], alpha: float, fixed: set[int]) -> tuple[int, ...]:
    return tuple(s if k in fixed else max(1, min(s, round(alpha * s))) for k, s in enumerate(shape))


def _tt_ranks(shape: Sequence[int], r: int) -> tuple[int, ...]:
    return tuple(min(r, m) for m in tt_max_ranks(shape))


def _from_fraction(shape: Sequence[int], name: str, fraction: float, fixed: set[int]) -> int | tuple[int, ...]:
    target = fraction * math.prod(shape)
    if name == "cp":
        return max(1, int(target // (sum(shape) + 1)))
    if name == "tucker":
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if n_parameters(shape, name, _tucker_ranks(shape, mid, fixed)) <= target:
                lo = mid
            else:
                hi = mid
        return _tucker_ranks(shape, lo, fixed)
    lo_r, hi_r = 1, max(tt_max_ranks(shape))
    while lo_r < hi_r:  # largest uniform bond rank within budget
        mid_r = (lo_r + hi_r + 1) // 2
        if n_parameters(shape, name, _tt_ranks(shape, mid_r)) <= target:
            lo_r = mid_r
        else:
            hi_r = mid_r - 1
    return _tt_ranks(shape, lo_r)


def resolve_rank(
    shape: Sequence[int], factorization: str, rank: Rank, fixed_modes: Sequence[int] = (), layer: str = ""
) -> int | tuple[int, ...]:
    """Turn a user rank into explicit ranks for ``shape``, rejecting ranks above the full rank.

    Args:
        shape: shape of the tensor to factorize.
        factorization: ``"cp"``, ``"tucker"`` or ``"tt"``.
        rank: a float in (0, 1] (fraction of the dense parameter count), ``"full"``, an int (CP rank; Tucker rank
            of every non-fixed mode; TT rank of every inner bond) or a tuple (Tucker: one per mode, or one per
            non-fixed mode; TT: ``(1, r_1, ..., 1)`` or the inner ranks).
        fixed_modes: Tucker modes kept at full rank (the spatial modes of a convolution by default).
        layer: layer name used in error messages.

    Raises:
        ValueError: the rank is malformed or larger than the full rank.

    Example:
        >>> resolve_rank((64, 32, 3, 3), "tucker", 0.25, fixed_modes=(2, 3))
        (24, 12, 3, 3)
        >>> resolve_rank((64, 32, 3, 3), "cp", 0.25)
        44
    """
    name = normalize_factorization(factorization)
    shape = tuple(int(s) for s in shape)
    fixed = set(fixed_modes) if name == "tucker" else set()
    full = full_rank(shape, name)
    where = _where(layer)
    if isinstance(rank, str):
        if rank == "full":
            return full
        if rank == "same":
            rank = 1.0
        else:
            raise ValueError(
                f"rank{where}: expected a float in (0, 1], 'full', an int or a tuple of ints, got {rank!r}"
            )
    if isinstance(rank, float):
        if not 0.0 < rank <= 1.0:
            raise ValueError(
                f"rank{where}: a float rank is a fraction of the dense parameters and must be in "
                f"(0, 1], got {rank}. HINT: use rank='full' (or explicit ranks) for no compression."
            )
        return _from_fraction(shape, name, rank, fixed)
    if isinstance(rank, bool) or not isinstance(rank, (int, Sequence)):
        raise ValueError(f"rank{where}: expected a float, 'full', an int or a tuple of ints, got {rank!r}")
    if isinstance(rank, int):
        if rank < 1:
            raise ValueError(f"rank{where}: expected a positive rank, got {rank}")
        if name == "cp":
            if rank > full:  # type: ignore[operator]
                raise ValueError(
                    f"rank{where}: CP rank {rank} is larger than the full rank {full} of a tensor of "
                    f"shape {shape}; use rank <= {full} or rank='full'"
                )
            return rank
        if name == "tucker":
            free = [k for k in range(len(shape)) if k not in fixed]
            too_big = [k for k in free if rank > shape[k]]
            if too_big:
                raise ValueError(
                    f"rank{where}: Tucker rank {rank} is larger than the full rank of mode(s) {too_big} "
                    f"(full rank {full}); use rank <= {min(shape[k] for k in free)} or a tuple"
                )
            return tuple(shape[k] if k in fixed else rank for k in range(len(shape)))
        if rank > max(full):  # type: ignore[arg-type]
            raise ValueError(f"rank{where}: TT rank {rank} is larger than the full TT rank {full} of shape {shape}")
        return _tt_ranks(shape, rank)
    ranks = tuple(int(r) for r in rank)
    if name == "cp":
        raise ValueError(f"rank{where}: CP takes a single int rank, got {rank!r}")
    if name == "tucker":
        free = [k for k in range(len(shape)) if k not in fixed]
        if len(ranks) == len(free) and len(free) < len(shape):
            it = iter(ranks)
            ranks = tuple(shape[k] if k in fixed else next(it) for k in range(len(shape)))
        if len(ranks) != len(shape):
            raise ValueError(f"rank{where}: Tucker needs {len(shape)} ranks for shape {shape}, got {rank!r}")
    else:
        if len(ranks) == len(shape) - 1:
            ranks = (1, *ranks, 1)
        if len(ranks) != len(shape) + 1 or ranks[0] != 1 or ranks[-1] != 1:
            raise ValueError(
                f"rank{where}: TT needs ranks (1, r_1, ..., r_{len(shape) - 1}, 1) for shape {shape}, got {rank!r}"
            )
    bound = full if isinstance(full, tuple) else ()
    bad = [k for k, (r, f) in enumerate(zip(ranks, bound)) if r > f or r < 1]
    if bad:
        raise ValueError(
            f"rank{where}: ranks {ranks} exceed the full rank {full} of shape {shape} at position(s) "
            f"{bad}; lower them or use rank='full'"
        )
    return ranks
