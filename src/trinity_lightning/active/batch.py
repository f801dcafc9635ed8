"""Batch-aware query heuristics: they choose the whole query jointly from the pool's outputs.

A per-example heuristic scores each example alone and the engine keeps the top ``k`` while streaming the pool. The
heuristics here need the pool at once (and some the labelled set): BatchBALD and EPIG (MC samples), coreset and
embedding k-means (embeddings), BADGE (logits and embeddings), information density (a base score and
embeddings). The round engine computes exactly the outputs a heuristic ``requires`` over the candidates (each rank
its shard under DDP, gathered in pool order), then calls :meth:`PoolQueryStrategy.select` once on every rank
(every rank gets the same answer: the heuristics are deterministic given the per-round seed).

Memory: the stored outputs are one row per candidate (``S x C`` MC probabilities, ``D`` embedding floats); the
selections themselves work in chunks (BatchBALD keeps ``max_configurations x S`` weights, BADGE never builds the
``C x D`` gradient embeddings: it uses ``<g_i, g_j> = <a_i, a_j> <h_i, h_j>``). Only classification outputs
``(N, C)`` are supported here. Use ``pool_subset`` on :class:`~trinity_lightning.active.ActiveLearning` to bound a
very large pool.

Example:
    >>> from trinity_lightning.active.strategies import BALD
    >>> mc = torch.randn(8, 40, 3, generator=torch.Generator().manual_seed(0))  # (S, N, C) MC logits
    >>> picks = BatchBALD(n_samples=8).select({"mc_logits": mc}, k=4)
    >>> picks[0] == int(BALD(n_samples=8).score(mc).argmax())               # its first pick is BALD's
    True
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from trinity_lightning.active.strategies import (
    EMBEDDINGS,
    LABELLED,
    LOGITS,
    MC_LOGITS,
    QueryStrategy,
    get_heuristic,
    register_heuristic,
)

__all__ = [
    "BADGE",
    "EPIG",
    "BatchBALD",
    "Coreset",
    "EmbeddingKMeans",
    "InformationDensity",
    "PoolQueryStrategy",
]

_CHUNK_FLOATS = 1 << 24  # 64 MB of float32 per working block


class PoolQueryStrategy(QueryStrategy):
    """Base class of heuristics that choose the whole query at once: ``select(pool, k, labelled) -> positions``.

    ``pool`` maps each output in :attr:`requires` to a tensor with one row per candidate (``mc_logits`` keeps the
    samples in front: ``(S, N, C)``); ``labelled`` holds the same outputs for the labelled set when ``"labelled"``
    is required (``None`` when nothing is labelled yet). ``select`` returns ``k`` positions into the pool, best
    (first chosen) first. ``embedding_layer`` names the layer whose input is the embedding when the module has no
    ``pool_embeddings(batch)`` method.

    Example:
        >>> class Farthest(PoolQueryStrategy):           # farthest from the origin
        ...     requires = frozenset({"embeddings"})
        ...     def select(self, pool, k, labelled=None):
        ...         return pool["embeddings"].norm(dim=1).topk(k).indices.tolist()
        >>> Farthest().select({"embeddings": torch.tensor([[0.0], [3.0], [1.0]])}, 2)
        [1, 2]
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({LOGITS})
    embedding_layer: str | None = None

    def begin(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(int(seed))

    def generator(self) -> torch.Generator:
        """The per-round generator (seeded by :meth:`begin`)."""
        gen = getattr(self, "_generator", None)
        if gen is None:
            gen = self._generator = torch.Generator().manual_seed(0)
        return gen

    def score(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} chooses the batch jointly; call select(pool, k, labelled)")

    def score_outputs(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} chooses the batch jointly; call select(pool, k, labelled)")

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        raise NotImplementedError


def _pool_size(pool: dict[str, torch.Tensor]) -> int:
    for key, value in pool.items():
        if key == MC_LOGITS:
            return int(value.shape[1])
        if key != "mask":
            return int(value.shape[0])
    raise ValueError("pool: no outputs")


def _check_k(pool: dict[str, torch.Tensor], k: int) -> int:
    n = _pool_size(pool)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive query size, got {k!r}")
    if k > n:
        raise ValueError(f"query_size: {k} examples asked but the pool holds only {n}")
    return n


def _mc_probs(pool: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The MC probabilities ``(S, N, C)`` (float32) of a classification pool."""
    if MC_LOGITS not in pool:
        raise ValueError(f"pool: {name} needs 'mc_logits', got {sorted(pool)}")
    logits = pool[MC_LOGITS]
    if logits.ndim != 3:
        raise ValueError(f"mc_logits: {name} supports classification (S, N, C), got {tuple(logits.shape)}")
    return logits.float().softmax(-1)


def _embeddings(outputs: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if EMBEDDINGS not in outputs:
        raise ValueError(f"pool: {name} needs 'embeddings', got {sorted(outputs)}")
    return outputs[EMBEDDINGS].float().flatten(1)


def _xlogx_sum(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.xlogy(p, p).sum(dim)


@register_heuristic("batchbald")
class BatchBALD(PoolQueryStrategy):
    """BatchBALD (Kirsch, van Amersfoort & Gal, NeurIPS 2019): greedily maximize the joint mutual information
    ``I(y_1, ..., y_b; w)`` between the batch's labels and the model parameters.

    Step ``b`` adds the candidate ``x`` with the largest ``H(y_x | y_1..y_{b-1}) - E_w H(y_x | w)``. The first
    term is an expectation over label configurations ``y_1..y_{b-1}``: enumerated exactly while there are at most
    ``max_configurations`` of them (``C ** (b-1)``), then ``max_configurations`` configurations sampled from the
    joint predictive (seeded). Each configuration keeps only its posterior weights over the ``S`` samples
    (normalized, so nothing underflows), so memory is ``max_configurations x S`` plus a chunk of candidates, never
    ``C ** b``. The first pick is BALD's argmax.

    Args:
        n_samples: MC-dropout passes (ignored for an ensemble: its members are the samples).
        max_configurations: configurations kept (exactly enumerated below it, sampled above).
        candidates: consider only the ``candidates`` best examples by BALD (``None``: the whole pool); the usual
            speed-up, the greedy picks rarely leave the BALD top few hundred.

    Example:
        >>> a = torch.tensor([[5.0, -5], [5, -5], [-5, 5], [-5, 5]])  # 4 samples split 2:2 on one question
        >>> b = torch.tensor([[4.0, -4], [-4, 4], [4, -4], [-4, 4]])  # another, independent question
        >>> mc = torch.stack([a, a, b], 1)                               # (S=4, N=3, C=2): example 1 copies 0
        >>> BatchBALD(n_samples=4).select({"mc_logits": mc}, k=2)       # BALD's top 2 would be [0, 1]
        [0, 2]
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({MC_LOGITS})
    stochastic: ClassVar[bool] = True

    def __init__(self, n_samples: int = 20, max_configurations: int = 1024, candidates: int | None = None) -> None:
        if not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples: BatchBALD needs at least 2 stochastic passes, got {n_samples!r}")
        if not isinstance(max_configurations, int) or max_configurations < 1:
            raise ValueError(f"max_configurations: expected a positive count, got {max_configurations!r}")
        if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
            raise ValueError(f"candidates: expected a positive count or None, got {candidates!r}")
        self.n_samples, self.max_configurations, self.candidates = n_samples, max_configurations, candidates

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        n = _check_k(pool, k)
        probs = _mc_probs(pool, "batchbald").double()  # (S, N, C)
        s_count, _, c_count = probs.shape
        cond = -_xlogx_sum(probs).mean(0)  # E_w H(y|w), (N,)
        if self.candidates is not None and self.candidates < n:
            bald = -_xlogx_sum(probs.mean(0)) - cond
            keep = torch.sort(bald.topk(max(self.candidates, k)).indices).values
            probs, cond = probs[:, keep], cond[keep]
        else:
            keep = torch.arange(n)
        flat = probs.reshape(s_count, -1)  # (S, N*C)
        log_probs = probs.clamp_min(1e-300).log()
        weights = torch.full((1, s_count), 1.0 / s_count, dtype=probs.dtype)  # posterior over samples, per config
        config_p = torch.ones(1, dtype=probs.dtype)  # probability of each configuration (exact mode)
        exact = True
        chosen: list[int] = []
        taken = torch.zeros(probs.shape[1], dtype=torch.bool)
        gen = self.generator()
        for _ in range(k):
            m = weights.shape[0]
            chunk = max(1, _CHUNK_FLOATS // max(1, m * c_count))
            gain = torch.empty(probs.shape[1], dtype=probs.dtype)
            for start in range(0, probs.shape[1], chunk):
                stop = min(start + chunk, probs.shape[1])
                pred = (weights @ flat[:, start * c_count : stop * c_count]).reshape(m, stop - start, c_count)
                h = -_xlogx_sum(pred)  # (M, chunk): H(y_x | configuration)
                gain[start:stop] = config_p @ h if exact else h.mean(0)
            gain = gain - cond
            gain[taken] = -math.inf
            best = int(gain.argmax())
            chosen.append(best)
            taken[best] = True
            # extend the configurations with the chosen example's label
            p_best = probs[:, best, :]  # (S, C)
            if exact and m * c_count <= self.max_configurations:
                joint = weights.unsqueeze(2) * p_best.unsqueeze(0)  # (M, S, C): w(s|cfg) p(c|s)
                marg = joint.sum(1)  # (M, C): p(c | cfg)
                config_p = (config_p.unsqueeze(1) * marg).reshape(-1)
                weights = (joint / marg.clamp_min(1e-300).unsqueeze(1)).permute(0, 2, 1).reshape(-1, s_count)
            else:
                if exact:  # switch to sampling: draw configurations by their probability
                    draw = torch.multinomial(config_p.float(), self.max_configurations, replacement=True, generator=gen)
                    weights = weights[draw]
                    exact = False
                pred = weights @ p_best  # (M, C)
                labels = torch.multinomial(pred.float().clamp_min(0), 1, generator=gen).squeeze(1)
                log_w = weights.clamp_min(1e-300).log() + log_probs[:, best, :].T[labels]
                weights = torch.softmax(log_w, dim=1)
                config_p = torch.ones(weights.shape[0], dtype=probs.dtype) / weights.shape[0]
        return [int(keep[i]) for i in chosen]


@register_heuristic("epig")
class EPIG(PoolQueryStrategy):
    """Expected predictive information gain (Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, AISTATS
    2023): the mutual information between a candidate's label and the labels of target inputs.

    ``EPIG(x) = E_{x*} [ KL( p(y, y* | x, x*) || p(y | x) p(y* | x*) ) ]`` with ``p(y, y*) = mean_s p_s(y) p_s(y*)``;
    the targets are ``n_targets`` pool examples drawn with the per-round seed (the pool stands for the input
    distribution). Computed in candidate chunks: memory ``chunk x n_targets x C^2``.

    Args:
        n_samples: MC-dropout passes (an ensemble's members otherwise).
        n_targets: target inputs drawn from the pool.

    Example:
        >>> _ = torch.manual_seed(0); mc = torch.randn(6, 30, 3)
        >>> len(EPIG(n_samples=6, n_targets=10).select({"mc_logits": mc}, k=5))
        5
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({MC_LOGITS})
    stochastic: ClassVar[bool] = True

    def __init__(self, n_samples: int = 20, n_targets: int = 100) -> None:
        if not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples: EPIG needs at least 2 stochastic passes, got {n_samples!r}")
        if not isinstance(n_targets, int) or n_targets < 1:
            raise ValueError(f"n_targets: expected a positive count, got {n_targets!r}")
        self.n_samples, self.n_targets = n_samples, n_targets

    def scores(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """EPIG of each candidate: ``probs`` ``(S, N, C)``, ``targets`` ``(S, T, C)`` probabilities -> ``(N,)``."""
        s_count, n, c_count = probs.shape
        t_count = targets.shape[1]
        target_marg = targets.mean(0)  # (T, C)
        h_target = -_xlogx_sum(target_marg).mean()
        marg = probs.mean(0)  # (N, C)
        h_pool = -_xlogx_sum(marg)
        flat_t = targets.reshape(s_count, -1)  # (S, T*C)
        out = torch.empty(n, dtype=probs.dtype)
        chunk = max(1, _CHUNK_FLOATS // max(1, t_count * c_count * c_count))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            part = probs[:, start:stop, :].reshape(s_count, -1)  # (S, n*C)
            joint = (part.T @ flat_t / s_count).reshape(stop - start, c_count, t_count, c_count)
            h_joint = -_xlogx_sum(joint.permute(0, 2, 1, 3).reshape(stop - start, t_count, -1)).mean(1)
            out[start:stop] = h_pool[start:stop] + h_target - h_joint
        return out

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        n = _check_k(pool, k)
        probs = _mc_probs(pool, "epig")
        targets = torch.randperm(n, generator=self.generator())[: self.n_targets]
        scores = self.scores(probs, probs[:, targets])
        return torch.sort(scores, descending=True, stable=True).indices[:k].tolist()


def _sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(len(x), len(y))``."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ y.T + y.pow(2).sum(1)).clamp_min(0)


def _min_sq_dist(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Distance of each row of ``x`` to its nearest center, in chunks of centers."""
    out = torch.full((len(x),), math.inf, dtype=x.dtype)
    chunk = max(1, _CHUNK_FLOATS // max(1, len(x)))
    for start in range(0, len(centers), chunk):
        out = torch.minimum(out, _sq_dist(x, centers[start : start + chunk]).amin(1))
    return out


@register_heuristic("coreset")
class Coreset(PoolQueryStrategy):
    """Core-set selection (Sener & Savarese, ICLR 2018), greedy k-center: repeatedly take the pool example
    farthest from everything labelled or already chosen, in embedding space.

    Needs the embeddings of the pool and of the labelled set (``requires = {"embeddings", "labelled"}``). With
    nothing labelled, the first pick is the example farthest from the pool's mean. Memory: one distance per
    candidate.

    Example:
        >>> pool = {"embeddings": torch.tensor([[0.0], [1.0], [5.0], [9.0]])}
        >>> Coreset().select(pool, 2, labelled={"embeddings": torch.tensor([[0.5]])})
        [3, 2]
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({EMBEDDINGS, LABELLED})

    def __init__(self, embedding_layer: str | None = None) -> None:
        self.embedding_layer = embedding_layer

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        _check_k(pool, k)
        x = _embeddings(pool, "coreset")
        if labelled is not None and EMBEDDINGS in labelled and len(labelled[EMBEDDINGS]):
            dist = _min_sq_dist(x, labelled[EMBEDDINGS].float().flatten(1).to(x.device))
        else:
            dist = _sq_dist(x, x.mean(0, keepdim=True)).squeeze(1)
        chosen: list[int] = []
        for _ in range(k):
            best = int(dist.argmax())
            chosen.append(best)
            dist = torch.minimum(dist, _sq_dist(x, x[best : best + 1]).squeeze(1))
            dist[best] = -1.0
        return chosen


def _kmeans_pp(sq_dist_to: Any, n: int, k: int, gen: torch.Generator, first: int) -> list[int]:
    """k-means++ seeding: ``sq_dist_to(i) -> (n,)`` squared distances of every point to point ``i``."""
    chosen = [first]
    dist = sq_dist_to(first)
    for _ in range(k - 1):
        dist = dist.clamp_min(0)
        dist[chosen] = 0.0
        total = float(dist.sum())
        if total <= 0:  # every point coincides with a center: take the next unchosen
            rest = [i for i in range(n) if i not in set(chosen)]
            nxt = rest[0]
        else:
            nxt = int(torch.multinomial(dist.float() / total, 1, generator=gen))
        chosen.append(nxt)
        dist = torch.minimum(dist, sq_dist_to(nxt))
    return chosen


@register_heuristic("badge")
class BADGE(PoolQueryStrategy):
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding on gradient embeddings, for uncertainty *and* diversity.

    The gradient embedding of ``x`` is the cross-entropy gradient w.r.t. the last linear layer at the predicted
    label: ``g = (p - e_yhat) (x) h`` (``h`` the layer's input, the embedding). It is never built: distances use
    ``<g_i, g_j> = <a_i, a_j> <h_i, h_j>`` with ``a = p - e_yhat``, so memory stays ``N (C + D)``. The first
    center is the largest gradient; then each next center is drawn with probability proportional to its squared
    distance to the nearest center (seeded per round).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> pool = {"logits": torch.randn(20, 3), "embeddings": torch.randn(20, 5)}
        >>> picks = BADGE().select(pool, 4)
        >>> len(set(picks))
        4
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({LOGITS, EMBEDDINGS})

    def __init__(self, embedding_layer: str | None = None) -> None:
        self.embedding_layer = embedding_layer

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        n = _check_k(pool, k)
        logits = pool[LOGITS].float()
        if logits.ndim != 2:
            raise ValueError(f"logits: badge supports classification (N, C), got {tuple(logits.shape)}")
        h = _embeddings(pool, "badge").double()
        p = logits.softmax(-1).double()
        a = p - torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).double()
        sq_norm = a.pow(2).sum(1) * h.pow(2).sum(1)  # ||g||^2

        def sq_dist_to(i: int) -> torch.Tensor:
            return sq_norm + sq_norm[i] - 2 * (a @ a[i]) * (h @ h[i])

        return _kmeans_pp(sq_dist_to, n, k, self.generator(), int(sq_norm.argmax()))


@register_heuristic("kmeans")
class EmbeddingKMeans(PoolQueryStrategy):
    """Diversity by clustering: k-means (k-means++ start, ``iterations`` Lloyd steps) of the pool's embeddings into
    ``k`` clusters, and the example nearest each centroid (biggest clusters first).

    Example:
        >>> pool = {"embeddings": torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.3], [9.0]])}
        >>> sorted(EmbeddingKMeans().select(pool, 3))   # the point nearest each cluster's mean
        [1, 4, 6]
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({EMBEDDINGS})

    def __init__(self, iterations: int = 20, embedding_layer: str | None = None) -> None:
        if not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations: expected a count >= 0, got {iterations!r}")
        self.iterations, self.embedding_layer = iterations, embedding_layer

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        n = _check_k(pool, k)
        x = _embeddings(pool, "kmeans")
        gen = self.generator()
        seeds = _kmeans_pp(
            lambda i: _sq_dist(x, x[i : i + 1]).squeeze(1), n, k, gen, int(torch.randint(n, (1,), generator=gen))
        )
        centers = x[seeds].clone()
        for _ in range(self.iterations):
            assign = torch.cat([_sq_dist(x[s : s + 4096], centers).argmin(1) for s in range(0, n, 4096)])
            sums = torch.zeros_like(centers).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k).to(x.dtype)
            moved = sums / counts.clamp_min(1).unsqueeze(1)
            new = torch.where(counts.unsqueeze(1) > 0, moved, centers)
            if torch.equal(new, centers):
                break
            centers = new
        assign = torch.cat([_sq_dist(x[s : s + 4096], centers).argmin(1) for s in range(0, n, 4096)])
        counts = torch.bincount(assign, minlength=k)
        dist = _sq_dist(x, centers)  # (N, k)
        chosen: list[int] = []
        taken = torch.zeros(n, dtype=torch.bool)
        for c in torch.sort(counts, descending=True, stable=True).indices.tolist():
            column = dist[:, c].masked_fill(taken, math.inf)
            best = int(column.argmin())
            chosen.append(best)
            taken[best] = True
        return chosen


@register_heuristic("information_density")
class InformationDensity(PoolQueryStrategy):
    """Information density (Settles & Craven, EMNLP 2008): a base uncertainty times the example's mean cosine
    similarity to the pool, to the power ``beta`` (representative *and* uncertain examples first).

    The mean similarity is ``<x_hat, mean_j x_hat_j>`` (unit-normalized embeddings), so it costs ``O(N D)``.
    Similarities below zero are clipped to zero.

    Args:
        heuristic: the base per-example heuristic (name or instance; default ``entropy``).
        beta: weight of the density term.
        **kwargs: arguments of the base heuristic when given by name.

    Example:
        >>> pool = {"logits": torch.zeros(3, 2), "embeddings": torch.tensor([[1.0, 0], [1.0, 0.1], [-1.0, 0]])}
        >>> InformationDensity().select(pool, 1)
        [1]
    """

    def __init__(
        self,
        heuristic: str | QueryStrategy = "entropy",
        beta: float = 1.0,
        embedding_layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        base = get_heuristic(heuristic, "heuristic", **kwargs)
        if isinstance(base, PoolQueryStrategy):
            raise ValueError(f"heuristic: {base!r} chooses whole batches; information_density needs a per-example one")
        self.heuristic, self.beta, self.embedding_layer = base, float(beta), embedding_layer
        self.n_samples = base.n_samples
        self.stochastic = base.stochastic  # type: ignore[misc]

    def required_outputs(self) -> frozenset[str]:
        return self.heuristic.required_outputs() | {EMBEDDINGS}

    def begin(self, seed: int) -> None:
        super().begin(seed)
        self.heuristic.begin(seed)

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        _check_k(pool, k)
        x = torch.nn.functional.normalize(_embeddings(pool, "information_density"), dim=1)
        density = (x @ x.mean(0)).clamp_min(0)
        base = self.heuristic.score_outputs({key: value for key, value in pool.items() if key != EMBEDDINGS})
        scores = base.float() * density.pow(self.beta)
        return torch.sort(scores, descending=True, stable=True).indices[:k].tolist()
