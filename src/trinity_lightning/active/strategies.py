"""Query heuristics ("query strategies" in the literature): small classes that turn model outputs into one
informativeness score per example. ("Strategy" alone, in this library, means a Lightning strategy.)

Every strategy works on classification logits ``(N, C)`` and on token-tagging logits ``(N, T, C)``
with a padding ``mask`` ``(N, T)`` (``True`` on real tokens). Higher score = queried first. Stochastic
strategies (``bald``) receive ``n_samples`` Monte-Carlo dropout outputs stacked in front:
``(S, N, C)`` or ``(S, N, T, C)``.

Heuristics are registered by name with :func:`register_heuristic` (in :data:`HEURISTICS`, a
:class:`~trinity_lightning.rounds.Registry`) so recipes select them in YAML (``strategy: mnlp`` on
``ActiveLearning``); :func:`get_heuristic` builds one from a name and keyword arguments and lists the
known names when the name is unknown. ``register_strategy``/``get_strategy``/``STRATEGIES`` are the old,
deprecated names.

**What a heuristic sees.** ``requires`` names the pool outputs a heuristic needs and the round engine computes
only those (see :mod:`trinity_lightning.active.scoring`): ``"logits"`` (one deterministic pass), ``"mc_logits"``
(``n_samples`` stochastic passes, or the members of an ensemble, stacked in front), ``"embeddings"`` (the module's
``pool_embeddings(batch)`` hook, or the input of the layer named by ``embedding_layer``) and ``"labelled"`` (the
same outputs for the labelled set). A per-example heuristic implements ``score(logits, mask)`` (the original
interface, still enough) or ``score_outputs(outputs)``; a heuristic that chooses the whole batch jointly (BatchBALD,
coreset, BADGE, ...) subclasses :class:`PoolQueryStrategy` (in :mod:`trinity_lightning.active.batch`) and
implements ``select(pool, k, labelled)``.

For a tagger with an autoregressive (greedy) decoder, pass the logits of the *decoded* steps: the
product of the per-step maxima is then the probability of the greedy path, which is what least
confidence and MNLP (Shen et al., ICLR 2018) score.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, TypeVar

import torch

from trinity_lightning.rounds.registry import Registry

__all__ = [
    "BALD",
    "EMBEDDINGS",
    "HEURISTICS",
    "LABELLED",
    "LOGITS",
    "MC_LOGITS",
    "MNLP",
    "OUTPUTS",
    "STRATEGIES",
    "Entropy",
    "ExpectedGradientLength",
    "KLDisagreement",
    "LeastConfidence",
    "Margin",
    "QueryStrategy",
    "RandomStrategy",
    "StochasticBatch",
    "VoteEntropy",
    "get_heuristic",
    "get_strategy",
    "register_heuristic",
    "register_strategy",
]

_S = TypeVar("_S", bound="type[QueryStrategy]")

LOGITS = "logits"
"""Deterministic logits ``(N, C)`` or ``(N, T, C)`` (with ``outputs["mask"]`` for tokens)."""
MC_LOGITS = "mc_logits"
"""Stochastic logits ``(S, N, C)`` or ``(S, N, T, C)``: MC-dropout passes or an ensemble's members."""
EMBEDDINGS = "embeddings"
"""One vector per example ``(N, D)``: ``pool_embeddings(batch)`` or the input of ``embedding_layer``."""
LABELLED = "labelled"
"""The same outputs for the labelled set (passed to :meth:`PoolQueryStrategy.select` as ``labelled``)."""
OUTPUTS = (LOGITS, MC_LOGITS, EMBEDDINGS, LABELLED)
_REDUCTIONS = ("mean", "sum", "max")


def register_heuristic(name: str, *, override: bool = False) -> Any:
    """Class decorator adding a :class:`QueryStrategy` subclass to :data:`HEURISTICS` under ``name``.

    Example:
        >>> @register_heuristic("first")
        ... class First(QueryStrategy):
        ...     def score(self, logits, mask=None):
        ...         return -torch.arange(len(logits), dtype=torch.float32)
        >>> get_heuristic("first").score(torch.zeros(3, 2)).tolist()
        [-0.0, -1.0, -2.0]
        >>> _ = HEURISTICS.pop("first")
    """

    def decorate(cls: _S) -> _S:
        if not (isinstance(cls, type) and issubclass(cls, QueryStrategy)):
            raise TypeError(f"register_heuristic({name!r}): {cls!r} is not a QueryStrategy subclass")
        HEURISTICS.register(name, cls, override=override)
        cls.name = name
        return cls

    return decorate


def get_heuristic(heuristic: str | QueryStrategy, /, _argument: str = "heuristic", **kwargs: Any) -> QueryStrategy:
    """Return ``heuristic`` itself, or build the registered query heuristic of that name with ``kwargs``.

    Example:
        >>> get_heuristic("bald", n_samples=5).n_samples
        5
    """
    return HEURISTICS.build(heuristic, _argument, **kwargs)


def register_strategy(name: str, *, override: bool = False) -> Any:
    """Deprecated alias of :func:`register_heuristic` ("strategy" alone means a Lightning strategy)."""
    warnings.warn("register_strategy is deprecated; use register_heuristic", DeprecationWarning, stacklevel=2)
    return register_heuristic(name, override=override)


def get_strategy(strategy: str | QueryStrategy, **kwargs: Any) -> QueryStrategy:
    """Alias of :func:`get_heuristic`, kept for existing code.

    Example:
        >>> get_strategy("entropy")
        Entropy(reduction='mean')
    """
    return get_heuristic(strategy, "strategy", **kwargs)


def _check(logits: torch.Tensor, mask: torch.Tensor | None, stochastic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes; return ``(logits as (..., N, T, C), mask (N, T) bool)`` (classification gets T=1)."""
    lead = 1 if stochastic else 0
    if not isinstance(logits, torch.Tensor) or logits.ndim not in (lead + 2, lead + 3):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        expected = "(S, N, C) or (S, N, T, C)" if stochastic else "(N, C) or (N, T, C)"
        raise ValueError(f"logits: expected shape {expected}, got {shape}")
    if logits.ndim == lead + 2:
        if mask is not None:
            raise ValueError("mask: only token logits (N, T, C) take a padding mask")
        logits = logits.unsqueeze(-2)
        mask = torch.ones(logits.shape[lead : lead + 2], dtype=torch.bool, device=logits.device)
    elif mask is None:
        mask = torch.ones(logits.shape[lead : lead + 2], dtype=torch.bool, device=logits.device)
    else:
        if tuple(mask.shape) != tuple(logits.shape[lead : lead + 2]):
            raise ValueError(
                f"mask: expected shape {tuple(logits.shape[lead : lead + 2])} (N, T), got {tuple(mask.shape)}"
            )
        mask = mask.to(device=logits.device, dtype=torch.bool)
    return logits.float(), mask


def _reduce(values: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce token values ``(N, T)`` over real tokens; empty sequences score ``-inf``."""
    lengths = mask.sum(-1)
    if reduction == "max":
        out = values.masked_fill(~mask, -math.inf).amax(-1)
    else:
        out = (values * mask).sum(-1)
        if reduction == "mean":
            out = out / lengths.clamp_min(1)
    return out.masked_fill(lengths == 0, -math.inf)


class QueryStrategy:
    """Base class: ``score(logits, mask) -> (N,)`` scores, higher = more informative.

    Class attributes: ``stochastic`` (needs ``n_samples`` MC-dropout outputs), ``needs_model``
    (``False`` for random sampling: no forward pass at all), ``requires`` (the pool outputs it needs, from
    :data:`OUTPUTS`; default: ``{"mc_logits"}`` when stochastic, ``{"logits"}`` otherwise, nothing without a
    model). Subclass it and register the subclass with :func:`register_heuristic` to make it selectable by
    name from YAML. A heuristic that needs more than logits overrides ``score_outputs(outputs)``, which gets a
    dict with the keys it ``requires`` (and ``"mask"`` for token outputs).

    Example:
        >>> class Shortest(QueryStrategy):  # prefer short sentences (fewer words to label)
        ...     def score(self, logits, mask=None):
        ...         lengths = mask.sum(1) if mask is not None else torch.ones(len(logits))
        ...         return -lengths.float()
        >>> mask = torch.tensor([[True, True, True], [True, False, False]])
        >>> Shortest().score(torch.zeros(2, 3, 4), mask).argmax().item()
        1
        >>> sorted(Shortest().required_outputs())
        ['logits']
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    requires: ClassVar[frozenset[str] | None] = None
    n_samples: int = 1

    def required_outputs(self) -> frozenset[str]:
        """The pool outputs the round engine must compute for this heuristic (see :data:`OUTPUTS`)."""
        if self.requires is not None:
            return frozenset(self.requires)
        if not self.needs_model:
            return frozenset()
        return frozenset({MC_LOGITS if self.stochastic else LOGITS})

    def begin(self, seed: int) -> None:
        """Called before each round's scoring with a per-round seed (used by random strategies)."""

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score_outputs(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One score per example from the outputs the heuristic ``requires`` (default: :meth:`score` on the
        logits, or on the MC logits when ``stochastic``)."""
        key = MC_LOGITS if self.stochastic else LOGITS
        if key not in outputs:
            raise ValueError(f"outputs: {type(self).__name__} scores {key!r}, got only {sorted(outputs)}")
        return self.score(outputs[key], outputs.get("mask"))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


HEURISTICS: Registry[QueryStrategy] = Registry("query heuristic", QueryStrategy, "heuristic")
"""Query heuristics by name (``heuristic: bald`` in YAML); :func:`register_heuristic` adds one."""
STRATEGIES = HEURISTICS  # deprecated name: "strategy" alone means a Lightning strategy


@register_heuristic("random")
class RandomStrategy(QueryStrategy):
    """Uniform random scores (the baseline); reproducible from the per-round seed.

    Example:
        >>> s = RandomStrategy(); s.begin(0); s.score(torch.zeros(4, 3)).shape
        torch.Size([4])
    """

    needs_model: ClassVar[bool] = False

    def __init__(self) -> None:
        self._generator = torch.Generator().manual_seed(0)

    def begin(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(int(seed))

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.rand(len(logits), generator=self._generator).to(logits.device)


@register_heuristic("least_confidence")
class LeastConfidence(QueryStrategy):
    """``1 - P(best path)``: one minus the product over tokens of the top probability.

    On classification logits this is ``1 - max_c p_c``. Long sentences score high (the product shrinks);
    use :class:`MNLP` to normalize by length.

    Example:
        >>> LeastConfidence().score(torch.tensor([[4.0, 0.0], [0.0, 0.0]])).argmax().item()
        1
    """

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, False)
        best = logits.log_softmax(-1).amax(-1)
        return -torch.expm1((best * mask).sum(-1))


@register_heuristic("mnlp")
class MNLP(QueryStrategy):
    """Maximum normalized log-probability: ``-(1/n) * sum_t log max_c p_tc`` (Shen et al. 2018).

    Example:
        >>> logits = torch.tensor([[[3.0, 0.0], [3.0, 0.0], [0.0, 0.0]]])  # 2 confident tokens + padding
        >>> round(MNLP().score(logits, torch.tensor([[True, True, False]])).item(), 4)
        0.0486
    """

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, False)
        return _reduce(-logits.log_softmax(-1).amax(-1), mask, "mean")


@register_heuristic("margin")
class Margin(QueryStrategy):
    """``1 - (p_top1 - p_top2)`` per token, reduced over the sequence (``reduction``: mean/sum/max).

    Example:
        >>> Margin().score(torch.tensor([[2.0, 1.9, -5.0], [5.0, 0.0, 0.0]])).argmax().item()
        0
    """

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, False)
        top2 = (
            logits.softmax(-1).topk(2, dim=-1).values
            if logits.shape[-1] > 1
            else torch.cat([torch.ones_like(logits), torch.zeros_like(logits)], -1)
        )
        return _reduce(1.0 - (top2[..., 0] - top2[..., 1]), mask, self.reduction)


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p).sum(-1)


@register_heuristic("entropy")
class Entropy(QueryStrategy):
    """Predictive entropy per token, reduced over the sequence (``reduction``: mean/sum/max).

    Example:
        >>> Entropy().score(torch.tensor([[0.0, 0.0], [9.0, 0.0]])).argmax().item()
        0
    """

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, False)
        return _reduce(_entropy(logits.log_softmax(-1)), mask, self.reduction)


@register_heuristic("bald")
class BALD(QueryStrategy):
    """Bayesian active learning by disagreement from ``n_samples`` MC-dropout passes.

    ``mode="mutual_information"`` (default): ``H[mean_s p_s] - mean_s H[p_s]`` per token, reduced over
    the sequence (``reduction``). ``mode="disagreement"``: the paper's sequence score
    ``1 - count(most frequent decoded sequence) / S`` (on ``(S, N, C)`` it is the fraction of passes that
    disagree with the modal class).

    Args:
        n_samples: stochastic forward passes per example (at least 2).
        mode: ``"mutual_information"`` or ``"disagreement"``.
        reduction: how token scores become a sequence score (``mean``, ``sum``, ``max``).

    Example:
        >>> same = torch.tensor([[5.0, 0.0]]).expand(4, 1, 2)          # all passes agree
        >>> split = torch.tensor([[5.0, 0.0], [0.0, 5.0]]).repeat(2, 1).unsqueeze(1)  # passes disagree
        >>> s = BALD(n_samples=4).score(torch.cat([same, split], dim=1))
        >>> bool(s[1] > s[0])
        True
    """

    stochastic: ClassVar[bool] = True
    _MODES = ("mutual_information", "disagreement")

    def __init__(self, n_samples: int = 10, mode: str = "mutual_information", reduction: str = "mean") -> None:
        if not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples: BALD needs at least 2 stochastic passes, got {n_samples!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode: expected one of {self._MODES}, got {mode!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.n_samples, self.mode, self.reduction = n_samples, mode, reduction

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, True)
        if self.mode == "disagreement":
            pred = logits.argmax(-1)  # (S, N, T)
            same = (pred.unsqueeze(1) == pred.unsqueeze(0)) | ~mask  # (S, S, N, T)
            agree = same.all(-1).sum(1).amax(0)  # (N,)
            return 1.0 - agree.float() / logits.shape[0]
        log_p = logits.log_softmax(-1)
        mean_log_p = torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])
        info = _entropy(mean_log_p) - _entropy(log_p).mean(0)
        return _reduce(info, mask, self.reduction)


def _check_stochastic(n_samples: int, name: str) -> None:
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(
            f"n_samples: {name} needs at least 2 stochastic passes (or ensemble members), got {n_samples!r}"
        )


@register_heuristic("vote_entropy")
class VoteEntropy(QueryStrategy):
    """Query by committee: entropy of the committee's votes (the argmax of each MC pass or ensemble member).

    ``-sum_c (v_c / S) log (v_c / S)`` with ``v_c`` the members voting for class ``c``, per token, reduced over the
    sequence. The committee is the leading dimension of ``mc_logits``: MC-dropout passes, or the members of an
    ensemble (whose ``mc_logits`` returns ``(M, N, ...)``, whatever ``n_samples`` says).

    Example:
        >>> agree = torch.tensor([[5.0, 0.0]]).expand(4, 1, 2)
        >>> split = torch.tensor([[5.0, 0.0], [0.0, 5.0]]).repeat(2, 1).unsqueeze(1)
        >>> [round(v, 4) for v in VoteEntropy(n_samples=4).score(torch.cat([agree, split], 1)).tolist()]
        [0.0, 0.6931]
    """

    stochastic: ClassVar[bool] = True

    def __init__(self, n_samples: int = 10, reduction: str = "mean") -> None:
        _check_stochastic(n_samples, "vote_entropy")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.n_samples, self.reduction = n_samples, reduction

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, True)
        votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0)  # (N, T, C)
        return _reduce(-torch.xlogy(votes, votes).sum(-1), mask, self.reduction)


@register_heuristic("kl_disagreement")
class KLDisagreement(QueryStrategy):
    """Query by committee: mean KL divergence of each member's prediction from the consensus (McCallum & Nigam).

    ``mean_s KL(p_s || mean_s p_s)``, which equals BALD's mutual information ``H[mean p] - mean H[p_s]`` (it is
    computed in that form); kept as its own name for committee users (modAL's ``max_disagreement``).

    Example:
        >>> x = torch.randn(5, 3, 4)
        >>> torch.allclose(KLDisagreement(5).score(x), BALD(5).score(x), atol=1e-6)
        True
    """

    stochastic: ClassVar[bool] = True

    def __init__(self, n_samples: int = 10, reduction: str = "mean") -> None:
        _check_stochastic(n_samples, "kl_disagreement")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.n_samples, self.reduction = n_samples, reduction

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits, mask = _check(logits, mask, True)
        log_p = logits.log_softmax(-1)
        mean_log_p = torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])
        kl = (log_p.exp() * (log_p - mean_log_p)).sum(-1).mean(0)
        return _reduce(kl, mask, self.reduction)


@register_heuristic("egl")
class ExpectedGradientLength(QueryStrategy):
    """Expected gradient length (Settles et al. 2008) of the cross-entropy loss w.r.t. the last linear layer.

    For logits ``W h + b``, the gradient for label ``y`` is ``(p - e_y) h^T`` (and ``p - e_y`` for the bias), so its
    norm is ``||p - e_y|| sqrt(||h||^2 + 1)`` and the score is ``sum_y p_y ||p - e_y|| sqrt(||h||^2 + 1)``: exact and
    without autograd, from the logits and the embeddings ``h`` (the input of the last linear layer: the module's
    ``pool_embeddings(batch)`` or ``embedding_layer``; see :mod:`trinity_lightning.active.scoring`).

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
        >>> h = torch.ones(2, 3)
        >>> ExpectedGradientLength().score_outputs({"logits": logits, "embeddings": h}).argmax().item()
        1
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({LOGITS, EMBEDDINGS})

    def score_outputs(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, h = outputs[LOGITS].float(), outputs[EMBEDDINGS].float().flatten(1)
        if logits.ndim != 2:
            raise ValueError(f"logits: egl scores classification logits (N, C), got {tuple(logits.shape)}")
        p = logits.softmax(-1)
        # ||p - e_y||^2 = ||p||^2 - 2 p_y + 1
        norms = ((p * p).sum(-1, keepdim=True) - 2 * p + 1).clamp_min(0).sqrt()
        return (p * norms).sum(-1) * (h.pow(2).sum(-1) + 1).sqrt()

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise TypeError(
            "egl needs embeddings as well as logits: call score_outputs({'logits': ..., 'embeddings': ...})"
        )


@register_heuristic("stochastic")
class StochasticBatch(QueryStrategy):
    """Stochastic batch acquisition (Kirsch et al., TMLR 2023) over any per-example heuristic.

    Instead of the top ``k`` scores, draws ``k`` examples without replacement with probability proportional to
    ``score ** beta`` (``mode="power"``, scores clipped at ``1e-12``) or ``exp(beta * score)``
    (``mode="softmax"``), by the Gumbel-top-k trick: the perturbed scores ``beta * log(score) + G`` (or
    ``beta * score + G``), ``G`` standard Gumbel, stream through the usual top-``k`` (so DDP sharding and
    memory are unchanged). The noise comes from the per-round seed (and the rank): a run is reproducible.

    Args:
        heuristic: the base heuristic (name or instance), e.g. ``"bald"``.
        mode: ``"power"`` or ``"softmax"``.
        beta: the inverse temperature (``beta -> inf``: the top-k of the base heuristic).
        **kwargs: arguments of the base heuristic when given by name.

    Example:
        >>> s = StochasticBatch("entropy", beta=1.0); s.begin(0)
        >>> s.score(torch.zeros(6, 3)).shape
        torch.Size([6])
    """

    _MODES = ("power", "softmax")

    def __init__(self, heuristic: str | QueryStrategy = "bald", mode: str = "power", beta: float = 1.0, **kwargs: Any):
        if mode not in self._MODES:
            raise ValueError(f"mode: expected one of {self._MODES}, got {mode!r}")
        if not beta > 0:
            raise ValueError(f"beta: expected a positive inverse temperature, got {beta!r}")
        self.heuristic = get_heuristic(heuristic, "heuristic", **kwargs)
        if not hasattr(self.heuristic, "score_outputs") or _is_pool_strategy(self.heuristic):
            raise ValueError(f"heuristic: {self.heuristic!r} chooses whole batches; stochastic needs a per-example one")
        self.mode, self.beta = mode, float(beta)
        self.n_samples = self.heuristic.n_samples
        self._generator = torch.Generator().manual_seed(0)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.heuristic.stochastic

    def required_outputs(self) -> frozenset[str]:
        return self.heuristic.required_outputs() or frozenset({LOGITS})

    def begin(self, seed: int) -> None:
        from trinity_lightning.rounds.inference import distributed_world

        rank, _ = distributed_world()
        self.heuristic.begin(seed)
        self._generator = torch.Generator().manual_seed(int(seed) * 7919 + rank)

    def _perturb(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        base = self.beta * (scores.clamp_min(1e-12).log() if self.mode == "power" else scores)
        uniform = torch.rand(scores.shape, generator=self._generator).clamp(1e-12, 1 - 1e-7).to(scores.device)
        perturbed = base - torch.log(-torch.log(uniform))
        return perturbed.masked_fill(torch.isinf(scores) & (scores < 0), -math.inf)

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._perturb(self.heuristic.score(logits, mask))

    def score_outputs(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.heuristic.needs_model:
            return self._perturb(self.heuristic.score(next(iter(outputs.values()))))
        return self._perturb(self.heuristic.score_outputs(outputs))


def _is_pool_strategy(strategy: QueryStrategy) -> bool:
    return callable(getattr(strategy, "select", None))
