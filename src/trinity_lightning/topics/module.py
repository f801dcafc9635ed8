"""Spectral LDA on Lightning: a ``TopicModelDataModule`` of sparse count batches and a ``TopicModel`` whose steps
accumulate the moments, so ``Trainer(strategy="ddp", devices=N)`` shards the corpus and all-reduces the sums.

One epoch is one pass over the corpus (:mod:`.moments`). Epoch 0 multiplies ``M2`` by a seeded Gaussian basis (the
randomized range finder); every later epoch uses the previous epoch's range as its basis, estimates the topics from
the third moment in that basis and refines the range once more (a power iteration). So the topics after epoch
``e ≥ 1`` are those of ``SpectralLDA(n_sketch_passes=e)`` and coherence is logged every epoch (the online mode).
No gradient is involved; the module holds one unused scalar parameter only because DDP requires a parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from trinity_lightning.topics.metrics import coherence_npmi, coherence_umass, top_words
from trinity_lightning.topics.moments import MomentSums, SparseBatch, next_basis
from trinity_lightning.topics.readers import (
    Corpus,
    as_counts,
    csr_to_batch,
    read_bow,
    read_hf_texts,
    read_ldac,
    texts_to_counts,
)
from trinity_lightning.topics.spectral import _initial_basis, topics_from_moments

__all__ = ["TopicModel", "TopicModelDataModule"]


class _ShardedBatches(IterableDataset):
    """Fixed batches of a CSR matrix; under ``torch.distributed`` rank r takes rows r, r + world, ... of every batch:
    the same number of steps on every rank (DDP's forward is a collective), no padding, no repeats (every document
    is counted exactly once across the ranks)."""

    def __init__(self, counts: sp.csr_matrix, batch_size: int) -> None:
        self.counts = counts
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[SparseBatch]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        for start in range(0, self.counts.shape[0], self.batch_size):
            yield csr_to_batch(self.counts[start : start + self.batch_size][rank::world])


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    from trinity_lightning.data import data_root

    return data_root() / p


class TopicModelDataModule(pl.LightningDataModule):
    """Document-term counts for :class:`TopicModel`, from a file, raw texts, a HF dataset or a matrix.

    Args:
        path: the corpus file: LDA-C (``format="ldac"``), UCI bag-of-words (``"bow"``), JSON Lines / CSV / Parquet
            texts or a HF hub name (``"texts"``/``"hf"``, read with :func:`datasets.load_dataset`). Relative paths
            that do not exist are looked up under the shared data folder (``TRINITY_DATA``).
        vocab: vocabulary file (one word per line) for ``ldac``/``bow``.
        format: ``"ldac"``, ``"bow"``, ``"texts"`` or ``"hf"``.
        text_column: the text column for ``texts``/``hf`` (``title_column`` is prepended when given).
        min_df, max_df, max_features, stop_words: vocabulary filters for raw texts (:func:`texts_to_counts`).
        batch_size: documents per batch.
        counts: a ready count matrix (SciPy sparse / array / :class:`Corpus`) instead of ``path``.

    Example:
        >>> dm = TopicModelDataModule(counts=np.array([[1, 2, 0], [0, 1, 3]]), batch_size=1)
        >>> dm.setup("fit"); dm.n_features, len(list(dm.train_dataloader()))
        (3, 2)
    """

    def __init__(
        self,
        path: str | None = None,
        vocab: str | None = None,
        format: Literal["ldac", "bow", "texts", "hf"] = "ldac",
        text_column: str = "text",
        title_column: str | None = None,
        split: str = "train",
        min_df: int | float = 5,
        max_df: int | float = 0.5,
        max_features: int | None = None,
        stop_words: list[str] | None = None,
        batch_size: int = 2048,
        counts: Any = None,
    ) -> None:
        super().__init__()
        if path is None and counts is None:
            raise ValueError("TopicModelDataModule needs path= (a corpus file) or counts= (a count matrix)")
        if format not in ("ldac", "bow", "texts", "hf"):
            raise ValueError(f"format={format!r}: expected one of 'ldac', 'bow', 'texts', 'hf'")
        self.path, self.vocab_path, self.format = path, vocab, format
        self.text_column, self.title_column, self.split = text_column, title_column, split
        self.filters = {"min_df": min_df, "max_df": max_df, "max_features": max_features, "stop_words": stop_words}
        self.batch_size = batch_size
        self._given = counts
        self.corpus: Corpus | None = None

    def _load(self) -> Corpus:
        if self._given is not None:
            if isinstance(self._given, Corpus):
                return self._given
            X = as_counts(self._given, "counts")
            return Corpus(X, [f"w{i}" for i in range(X.shape[1])])
        assert self.path is not None
        if self.format == "ldac":
            return read_ldac(_resolve(self.path), _resolve(self.vocab_path) if self.vocab_path else None)
        if self.format == "bow":
            return read_bow(_resolve(self.path), _resolve(self.vocab_path) if self.vocab_path else None)
        import datasets

        local = _resolve(self.path)
        if local.exists():
            kind = {".jsonl": "json", ".json": "json", ".gz": "json", ".csv": "csv", ".parquet": "parquet"}
            ds = datasets.load_dataset(kind.get(local.suffix, "json"), data_files=str(local), split="train")
        else:
            ds = datasets.load_dataset(self.path, split=self.split)
        f = self.filters
        filters: dict[str, Any] = {
            "stop_words": f["stop_words"],
            "min_df": f["min_df"],
            "max_df": f["max_df"],
            "max_features": f["max_features"],
        }
        if self.title_column:
            texts = [f"{a or ''}\n{b or ''}" for a, b in zip(ds[self.title_column], ds[self.text_column])]
            return texts_to_counts(texts, **filters)
        return read_hf_texts(ds, self.text_column, **filters)

    def setup(self, stage: str | None = None) -> None:
        """Read the corpus once."""
        if self.corpus is None:
            self.corpus = self._load()

    @property
    def counts(self) -> sp.csr_matrix:
        """The document-term counts (the reference corpus for coherence)."""
        self.setup()
        assert self.corpus is not None
        return self.corpus.counts

    @property
    def vocab(self) -> list[str]:
        """The vocabulary."""
        self.setup()
        assert self.corpus is not None
        return self.corpus.vocab

    @property
    def n_features(self) -> int:
        """Vocabulary size."""
        return int(self.counts.shape[1])

    def train_dataloader(self) -> DataLoader:
        """Sparse batches, sharded by rank under DDP (an iterable dataset: no sampler, no padding)."""
        return DataLoader(_ShardedBatches(self.counts, self.batch_size), batch_size=None)


class TopicModel(pl.LightningModule):
    """Spectral LDA as a LightningModule: each training step adds a batch to the moment sums, each epoch end
    all-reduces them (``trainer.strategy.reduce(..., "sum")``) and, from epoch 1 on, estimates the topics.

    Args:
        n_topics: number of topics ``k``.
        alpha0: Dirichlet concentration ``α₀``.
        oversample: extra whitening directions (``p = k + oversample``).
        decomposition: ``"power"`` or ``"als"``.
        n_restarts, n_iter: tensor power method settings.
        seed: seed of the range finder's Gaussian start and the restarts (the same on every rank).
        top_n: top words for coherence and the final table.
        show_topics: print a rich table of the top words per topic at the end of ``fit`` (rank 0).

    Attributes:
        topics_: topic-word probabilities (k × V tensor) after an epoch ≥ 1; ``alpha_``: the Dirichlet estimate.

    Example:
        >>> from trinity_lightning.topics import synthetic_lda
        >>> dm = TopicModelDataModule(counts=synthetic_lda(n_docs=800, n_words=40, n_topics=3).counts)
        >>> model = TopicModel(3, show_topics=False)
        >>> trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        ...                      enable_checkpointing=False)
        >>> trainer.fit(model, dm); model.topics_.shape
        torch.Size([3, 40])
    """

    def __init__(
        self,
        n_topics: int = 20,
        alpha0: float = 1.0,
        oversample: int = 10,
        decomposition: Literal["power", "als"] = "power",
        n_restarts: int = 10,
        n_iter: int = 100,
        seed: int = 0,
        top_n: int = 10,
        show_topics: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._ddp_anchor = nn.Parameter(torch.zeros(1))  # DDP refuses a module without parameters
        self.topics_: torch.Tensor | None = None
        self.alpha_: torch.Tensor | None = None
        self.basis: torch.Tensor | None = None
        self._sums: MomentSums | None = None

    def setup(self, stage: str) -> None:
        """Start from the seeded Gaussian basis (identity when the vocabulary is small)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "n_features"):
            raise ValueError("TopicModel needs a datamodule with n_features (e.g. TopicModelDataModule)")
        V = int(dm.n_features)
        k = self.hparams["n_topics"]
        if k > V:
            raise ValueError(f"n_topics={k} is larger than the vocabulary ({V} words)")
        if self.basis is None:
            p = min(V, k + self.hparams["oversample"])
            self.basis = _initial_basis(V, p, self.hparams["seed"], torch.float64, torch.device("cpu"))

    def configure_optimizers(self) -> Any:
        """No optimizer: the moments are sums, not parameters."""
        return None

    def _third(self) -> bool:
        assert self.basis is not None
        return self.current_epoch >= 1 or self.basis.shape[0] == self.basis.shape[1]

    def on_train_epoch_start(self) -> None:
        assert self.basis is not None
        self.basis = self.basis.to(self.device)
        self._sums = MomentSums.empty(self.basis, third=self._third())

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """A :class:`SparseBatch` moves itself (its int fields are not tensors)."""
        if isinstance(batch, SparseBatch):
            return batch.to(device, batch.vals.dtype)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch: SparseBatch, batch_idx: int) -> None:
        """Add the batch to the running sums."""
        assert self._sums is not None
        self._sums.add(batch)

    def on_train_epoch_end(self) -> None:
        """All-reduce the sums; topics from the third moment; next basis from the sketch."""
        sums = self._sums
        assert sums is not None and self.basis is not None
        sums.load_tensors([self.trainer.strategy.reduce(t, reduce_op="sum") for t in sums.tensors()])
        alpha0 = self.hparams["alpha0"]
        if sums.third:
            topics, alpha, _, _ = topics_from_moments(
                sums,
                self.hparams["n_topics"],
                alpha0,
                self.hparams["decomposition"],
                self.hparams["n_restarts"],
                self.hparams["n_iter"],
                self.hparams["seed"],
            )
            self.topics_, self.alpha_ = topics.cpu(), alpha.cpu()
            dm = getattr(self.trainer, "datamodule", None)
            if dm is not None and hasattr(dm, "counts"):
                n = self.hparams["top_n"]
                self.log("topics/npmi", float(coherence_npmi(self.topics_, dm.counts, n).mean()), sync_dist=False)
                self.log("topics/umass", float(coherence_umass(self.topics_, dm.counts, n).mean()), sync_dist=False)
        if self.basis.shape[0] != self.basis.shape[1]:
            self.basis = next_basis(sums.sketch(alpha0))
        self.log("topics/documents", float(sums.n1), sync_dist=False)

    def on_train_end(self) -> None:
        if self.hparams["show_topics"] and self.trainer.is_global_zero and self.topics_ is not None:
            from rich.console import Console

            Console().print(self.topic_table())

    def topic_table(self, vocab: list[str] | None = None) -> Any:
        """A rich table: each topic's ``α`` and top words."""
        from rich.table import Table

        if self.topics_ is None or self.alpha_ is None:
            raise RuntimeError("no topics yet: fit for at least 2 epochs")
        if vocab is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            vocab = getattr(dm, "vocab", None) or [f"w{i}" for i in range(self.topics_.shape[1])]
        table = Table(title=f"{self.topics_.shape[0]} topics (spectral LDA)")
        table.add_column("topic", justify="right")
        table.add_column("alpha", justify="right")
        table.add_column(f"top {self.hparams['top_n']} words")
        words = top_words(self.topics_, self.hparams["top_n"])
        for i, row in enumerate(words):
            table.add_row(str(i), f"{float(self.alpha_[i]):.3f}", " ".join(vocab[w] for w in row))
        return table

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["topics"] = {"topics": self.topics_, "alpha": self.alpha_, "basis": self.basis}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("topics", {})
        self.topics_, self.alpha_, self.basis = state.get("topics"), state.get("alpha"), state.get("basis")

    def components(self) -> np.ndarray:
        """The topics as a NumPy array (k × V)."""
        if self.topics_ is None:
            raise RuntimeError("no topics yet: fit for at least 2 epochs")
        return self.topics_.numpy()
