"""Cold start: which examples to label first, before any model is worth asking.

With nothing labelled, an uncertainty heuristic ranks the pool with an untrained model, which is no better than
random. These choose the first batch instead (``ActiveLearning(cold_start=...)`` with ``initial_labelled=0``;
the batch goes to the oracle as round 1, so a person labels it like any other round):

* :class:`RandomColdStart`: a uniform random sample (the baseline);
* :class:`ClassBalanced`: the same number of examples of each class, drawn from a *seed set* whose labels are
  known (given as ``labels``, or the dataset's own labels in a simulation);
* :class:`KMeansColdStart`: no labels at all: k-means on embeddings (the module's ``pool_embeddings(batch)``
  hook when it has one, else the flattened inputs), one example per cluster, the one nearest its centre
  (representative and diverse; Zhu et al. 2008, Yuan et al. 2020).

Each is also usable on its own: ``dm.label(cold.select(dm, 30))`` before ``fit``.

Example:
    >>> import torch
    >>> from trinity_lightning.data import ArrayDataset
    >>> from trinity_lightning.active import ActiveLearningDataModule
    >>> y = torch.tensor([0] * 90 + [1] * 10)
    >>> dm = ActiveLearningDataModule(ArrayDataset(torch.randn(100, 2), y), num_classes=2); dm.setup()
    >>> chosen = ClassBalanced().select(dm, 10)
    >>> sorted(int(y[i]) for i in chosen)
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from trinity_lightning.rounds.inference import batch_input, predict_pool

__all__ = ["COLD_STARTS", "ClassBalanced", "ColdStart", "KMeansColdStart", "RandomColdStart", "get_cold_start"]


def _check_size(size: int | None) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size: expected a positive number of examples, got {size!r}")


class ColdStart:
    """Base class: :meth:`select` returns the dataset indices of the first batch (``count`` pool examples).

    Args:
        size: how many examples; ``None`` takes the ``count`` the caller asks for (``ActiveLearning`` passes its
            query size; give ``size`` when the query size is in tokens).
        seed: seed of every random choice.
    """

    def __init__(self, size: int | None = None, seed: int = 0) -> None:
        _check_size(size)
        self.size, self.seed = size, seed

    def select(self, datamodule: Any, count: int | None = None, model: Any = None, trainer: Any = None) -> list[int]:
        """The first batch: ``size`` (else ``count``) indices from ``datamodule.pool_indices``."""
        pool = np.asarray(datamodule.pool_indices, dtype=np.int64)
        k = self.size if self.size is not None else count
        if k is None:
            raise ValueError(f"size: {type(self).__name__} needs a size (or the caller's count)")
        if k > len(pool):
            raise ValueError(f"size: asked for {k} examples but the pool holds {len(pool)}")
        return [int(i) for i in self.choose(datamodule, pool, int(k), model, trainer)]

    def choose(self, datamodule: Any, pool: np.ndarray, k: int, model: Any, trainer: Any) -> Sequence[int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class RandomColdStart(ColdStart):
    """A uniform random sample of the pool.

    Example:
        >>> import types
        >>> dm = types.SimpleNamespace(pool_indices=list(range(50)))
        >>> len(set(RandomColdStart(size=5).select(dm)))
        5
    """

    def choose(self, datamodule: Any, pool: np.ndarray, k: int, model: Any, trainer: Any) -> Sequence[int]:
        return np.sort(np.random.default_rng(self.seed).choice(pool, size=k, replace=False)).tolist()


def _dataset_label(datamodule: Any, index: int) -> Any:
    item = datamodule.dataset[index]
    value = item[datamodule.label_field]
    return value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value


class ClassBalanced(ColdStart):
    """As many examples of each class as possible (round-robin over the classes, random within a class).

    Args:
        size: how many examples (see :class:`ColdStart`).
        labels: the known labels of the seed set: ``{index: class}``; default: the dataset's own labels of every
            pool example (a simulation).
        seed: seed of the draw within each class.

    Raises:
        ValueError: a seed index outside the pool, or a label that is not one class id (a tag sequence).

    Example:
        >>> import types
        >>> dm = types.SimpleNamespace(pool_indices=list(range(10)))
        >>> ClassBalanced(size=4, labels={0: 0, 1: 0, 2: 0, 3: 0, 8: 1, 9: 2}).select(dm).__len__()
        4
    """

    def __init__(self, size: int | None = None, labels: Mapping[int, int] | None = None, seed: int = 0) -> None:
        super().__init__(size, seed)
        self.labels = dict(labels) if labels is not None else None

    def choose(self, datamodule: Any, pool: np.ndarray, k: int, model: Any, trainer: Any) -> Sequence[int]:
        in_pool = set(pool.tolist())
        if self.labels is not None:
            outside = [i for i in self.labels if int(i) not in in_pool]
            if outside:
                raise ValueError(f"labels: indices {outside[:5]} are not in the pool")
            known = {int(i): label for i, label in self.labels.items()}
        else:
            known = {int(i): _dataset_label(datamodule, int(i)) for i in pool}
        if len(known) < k:
            raise ValueError(f"labels: the seed set has {len(known)} labelled examples, fewer than the {k} asked")
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in sorted(known.items()):
            if isinstance(label, (list, tuple, bool)) or not isinstance(label, (int, np.integer)):
                raise ValueError(
                    f"labels: ClassBalanced needs one class id per example, got {label!r} for index {index}"
                )
            by_class[int(label)].append(index)
        rng = np.random.default_rng(self.seed)
        queues = [rng.permutation(by_class[c]).tolist() for c in sorted(by_class)]
        chosen: list[int] = []
        while len(chosen) < k:
            for queue in queues:
                if queue and len(chosen) < k:
                    chosen.append(int(queue.pop()))
        return sorted(chosen)


def _embeddings(model: Any, batch: Any) -> torch.Tensor:
    hook = getattr(model, "pool_embeddings", None) if model is not None else None
    out = hook(batch) if callable(hook) else batch_input(batch)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.float().reshape(len(out), -1)


class KMeansColdStart(ColdStart):
    """k-means with ``k`` = the batch size on embeddings; the example nearest each centre (no labels needed).

    Embeddings: ``model.pool_embeddings(batch) -> (N, D)`` when a model with that hook is given (an untrained
    encoder, or a pretrained one such as a transformer adapter), else the flattened inputs. Uses scikit-learn's
    ``KMeans`` (``pip install trinity-lightning[demo]`` or scikit-learn).

    Args:
        size: how many examples (= clusters; see :class:`ColdStart`).
        sample: cluster at most this many random pool examples (``None``: all).
        seed: seed of the sample and of k-means.
        use_model: read ``pool_embeddings`` from the model when it has the hook (``False``: always the inputs).

    Example:
        >>> import types
        >>> x = torch.cat([torch.randn(30, 2) * 0.1 + c for c in (torch.tensor([5.0, 0]), torch.tensor([0, 5.0]))])
        >>> dm = types.SimpleNamespace(pool_indices=list(range(60)), pool_dataloader=lambda idx: [x[idx]])
        >>> sorted(i // 30 for i in KMeansColdStart(size=2).select(dm))  # one per cluster
        [0, 1]
    """

    def __init__(
        self, size: int | None = None, sample: int | None = 20_000, seed: int = 0, use_model: bool = True
    ) -> None:
        super().__init__(size, seed)
        _check_size(sample)
        self.sample, self.use_model = sample, use_model

    def choose(self, datamodule: Any, pool: np.ndarray, k: int, model: Any, trainer: Any) -> Sequence[int]:
        try:
            from sklearn.cluster import KMeans
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("KMeansColdStart needs scikit-learn: pip install scikit-learn") from error
        rng = np.random.default_rng(self.seed)
        candidates = pool
        if self.sample is not None and len(pool) > max(self.sample, k):
            candidates = np.sort(rng.choice(pool, size=self.sample, replace=False))
        net = model if (model is not None and self.use_model) else torch.nn.Identity()
        x = predict_pool(
            net, candidates.tolist(), datamodule.pool_dataloader, _embeddings, trainer=trainer, shard=False
        ).numpy()
        km = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(x)
        distances = km.transform(x)  # (n, k)
        chosen: list[int] = []
        taken: set[int] = set()
        for centre in np.argsort(distances.min(0)):  # tightest clusters pick first; each takes a distinct example
            for row in np.argsort(distances[:, centre]):
                if int(row) not in taken:
                    taken.add(int(row))
                    chosen.append(int(candidates[row]))
                    break
        return sorted(chosen)


COLD_STARTS: dict[str, type[ColdStart]] = {
    "random": RandomColdStart,
    "balanced": ClassBalanced,
    "kmeans": KMeansColdStart,
}
"""Cold starts by name (``cold_start: kmeans`` in YAML through :func:`get_cold_start`)."""


def get_cold_start(cold_start: str | ColdStart, /, **kwargs: Any) -> ColdStart:
    """Return ``cold_start`` itself, or build the one of that name (``random``, ``balanced``, ``kmeans``).

    Example:
        >>> get_cold_start("kmeans", size=8).size
        8
    """
    if isinstance(cold_start, ColdStart):
        return cold_start
    if cold_start not in COLD_STARTS:
        raise ValueError(f"cold_start: unknown {cold_start!r}; expected one of {sorted(COLD_STARTS)}")
    return COLD_STARTS[cold_start](**kwargs)
