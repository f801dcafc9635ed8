"""Hugging Face transformers models in an active-learning campaign: sequence and token classification adapters.

A user's own pretrained model (``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification``)
runs in :class:`~trinity_lightning.active.ActiveLearning` with every heuristic, MNLP and BALD included:

* :class:`HFSequenceClassifier`: ``pool_logits`` ``(N, C)``; ``mc_logits`` ``n`` dropout passes ``(S, N, C)``.
* :class:`HFTokenClassifier`: the annotator labels *words*, the model sees *sub-tokens*. Each word's logits are
  those of its first sub-token, so ``pool_logits`` returns word logits ``(N, W, C)`` and a word mask ``(N, W)``
  (MNLP normalizes by the number of words, budgets count words), training uses the word tags on the first
  sub-tokens (the usual ``-100`` on the other sub-tokens, :func:`align_labels`), and predictions come back per
  word (:meth:`HFTokenClassifier.decode`, :func:`word_predictions`).

Data: :class:`HFTextDataset` (texts and class ids) and :class:`HFTaggedDataset` (word lists and word tag ids)
tokenize once with the user's tokenizer (a *fast* tokenizer: it must give ``word_ids()``); the label field is
``"labels"`` (a class id) or ``"tags"`` (word tag ids, what a person labels); :class:`HFCollator` pads a batch.
Install with ``pip install trinity-lightning[hf]``; nothing is downloaded unless the user loads a model by name.

Example:
    >>> align_labels([None, 0, 1, 1, 2, None], [3, 1, 2])
    [-100, 3, 1, -100, 2, -100]
    >>> word_predictions([9, 3, 1, 1, 2, 9], [None, 0, 1, 1, 2, None])
    [3, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import Dataset

from trinity_lightning.active.scoring import _DropoutOn

__all__ = [
    "HFCollator",
    "HFSequenceClassifier",
    "HFTaggedDataset",
    "HFTextDataset",
    "HFTokenClassifier",
    "align_labels",
    "word_predictions",
]

IGNORE = -100
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def align_labels(word_ids: Sequence[int | None], tags: Sequence[int], all_subtokens: bool = False) -> list[int]:
    """Word tags on sub-tokens: the first sub-token of each word gets its tag, the others (and specials) ``-100``.

    Args:
        word_ids: the tokenizer's ``word_ids()`` (``None`` for special tokens).
        tags: one tag id per word.
        all_subtokens: give every sub-token of a word the word's tag.
    """
    out, previous = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or (w == previous and not all_subtokens) else int(tags[w]))
        previous = w
    return out


def word_predictions(subtoken_values: Sequence[int], word_ids: Sequence[int | None]) -> list[int]:
    """Back from sub-tokens to words: the value at each word's first sub-token (words cut by truncation are lost)."""
    out: dict[int, int] = {}
    for value, w in zip(subtoken_values, word_ids):
        if w is not None and w not in out:
            out[w] = int(value)
    return [out[w] for w in sorted(out)]


def _encode(tokenizer: Any, text: Any, max_length: int, split: bool) -> Any:
    encoded = tokenizer(text, is_split_into_words=split, truncation=True, max_length=max_length)
    if split and not callable(getattr(encoded, "word_ids", None)):
        raise ValueError("tokenizer: HFTaggedDataset needs a fast tokenizer (one whose encodings have word_ids())")
    return encoded


class HFTextDataset(Dataset):
    """Texts with one class id each, tokenized once; items ``{"input_ids", "attention_mask", "labels"}``.

    Args:
        texts: the examples.
        labels: one class id per text (``None``: unknown yet, ``-1``; a simulation needs them).
        tokenizer: a Hugging Face tokenizer.
        max_length: truncation length in sub-tokens.
    """

    def __init__(
        self, texts: Sequence[str], labels: Sequence[int] | None, tokenizer: Any, max_length: int = 128
    ) -> None:
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"labels: got {len(labels)} labels for {len(texts)} texts")
        self.items = []
        for i, text in enumerate(texts):
            enc = _encode(tokenizer, text, max_length, split=False)
            item = {k: torch.tensor(enc[k]) for k in _MODEL_INPUTS if k in enc}
            item["labels"] = torch.tensor(-1 if labels is None else int(labels[i]))
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class HFTaggedDataset(Dataset):
    """Sentences as word lists with word tag ids, tokenized once into sub-tokens.

    Items: ``input_ids``, ``attention_mask`` (sub-tokens), ``word_starts`` (position of each word's first
    sub-token) and ``tags`` (one id per word: the label field a person fills). A word cut off by truncation keeps
    its tag but starts at ``0`` and is masked out of scoring and training.

    Example:
        >>> from transformers import BertTokenizerFast
        >>> vocab = {w: i for i, w in enumerate("[PAD] [UNK] [CLS] [SEP] [MASK] the play ##ing".split())}
        >>> data = HFTaggedDataset([["the", "playing"]], [[0, 1]], BertTokenizerFast(vocab=vocab))
        >>> data[0]["input_ids"].tolist(), data[0]["word_starts"].tolist()
        ([2, 5, 6, 7, 3], [1, 2])
    """

    def __init__(
        self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None, tokenizer: Any,
        max_length: int = 128,
    ) -> None:  # fmt: skip
        if tags is not None and len(tags) != len(sentences):
            raise ValueError(f"tags: got {len(tags)} tag sequences for {len(sentences)} sentences")
        self.items = []
        for i, words in enumerate(sentences):
            word_tags = [-1] * len(words) if tags is None else [int(t) for t in tags[i]]
            if len(word_tags) != len(words):
                raise ValueError(f"tags[{i}]: {len(word_tags)} tags for {len(words)} words")
            enc = _encode(tokenizer, list(words), max_length, split=True)
            starts = [0] * len(words)
            for position, w in reversed(list(enumerate(enc.word_ids()))):
                if w is not None:
                    starts[w] = position
            item = {k: torch.tensor(enc[k]) for k in _MODEL_INPUTS if k in enc}
            item["word_starts"] = torch.tensor(starts, dtype=torch.long)
            item["tags"] = torch.tensor(word_tags, dtype=torch.long)
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class HFCollator:
    """Pad a list of :class:`HFTextDataset` / :class:`HFTaggedDataset` items into a batch of tensors.

    ``input_ids`` pad with ``pad_token_id``, ``tags`` with ``-100``, the rest with 0; a tagged batch also gets
    ``word_mask`` (``True`` on real words that kept a sub-token).

    Example:
        >>> batch = HFCollator(0)([{"input_ids": torch.tensor([2, 5, 3]), "labels": torch.tensor(1)},
        ...                        {"input_ids": torch.tensor([2, 3]), "labels": torch.tensor(0)}])
        >>> batch["input_ids"].tolist(), batch["labels"].tolist()
        ([[2, 5, 3], [2, 3, 0]], [1, 0])
    """

    def __init__(self, pad_token_id: int = 0) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key in items[0]:
            values = [item[key] for item in items]
            if values[0].ndim == 0:
                batch[key] = torch.stack(values)
                continue
            pad = self.pad_token_id if key == "input_ids" else IGNORE if key == "tags" else 0
            batch[key] = nn.utils.rnn.pad_sequence(values, batch_first=True, padding_value=pad)
        if "word_starts" in batch:
            lengths = torch.tensor([len(item["word_starts"]) for item in items])
            real = torch.arange(batch["word_starts"].shape[1])[None, :] < lengths[:, None]
            batch["word_mask"] = real & (batch["word_starts"] > 0)
        return batch


class _HFModule(pl.LightningModule):
    """Shared parts: the wrapped model, AdamW, the inputs of a batch, MC dropout passes."""

    def __init__(self, model: nn.Module, lr: float = 5e-5, weight_decay: float = 0.0) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a transformers model (an nn.Module), got {type(model).__name__}")
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay

    def _subtoken_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [k for k in ("input_ids",) if k not in batch]
        if missing:
            raise ValueError(f"batch: expected a dict with {missing} (use HFCollator), got keys {sorted(batch)}")
        out = self.model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch})
        logits: torch.Tensor = out.logits if hasattr(out, "logits") else out[0]
        return logits

    def pool_logits(self, batch: dict[str, torch.Tensor]) -> Any:
        raise NotImplementedError

    def mc_logits(self, batch: dict[str, torch.Tensor], n_samples: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n_samples`` passes with the model's dropout on (``(S, N, ...)`` logits and the mask)."""
        with _DropoutOn(self.model):
            outs = [self.pool_logits(batch) for _ in range(n_samples)]
        if isinstance(outs[0], tuple):
            return torch.stack([o[0] for o in outs]), outs[0][1]
        return torch.stack(outs), None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _log_eval(self, stage: str, logits: torch.Tensor, target: torch.Tensor) -> None:
        if len(target) == 0:
            return
        loss = nn.functional.cross_entropy(logits.float(), target)
        acc = (logits.argmax(-1) == target).float().mean()
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=len(target), sync_dist=True)
        self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=len(target), sync_dist=True)


class HFSequenceClassifier(_HFModule):
    """A transformers sequence classifier as a LightningModule for :class:`ActiveLearning`.

    Args:
        model: e.g. ``AutoModelForSequenceClassification.from_pretrained(name, num_labels=C)``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.

    Batches: :class:`HFCollator` dicts with ``input_ids``, ``attention_mask`` and ``labels``.
    """

    def pool_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class logits ``(N, C)``."""
        return self._subtoken_logits(batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._subtoken_logits(batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self._subtoken_logits(batch).float(), batch["labels"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_eval("val", self._subtoken_logits(batch), batch["labels"])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_eval("test", self._subtoken_logits(batch), batch["labels"])


class HFTokenClassifier(_HFModule):
    """A transformers token classifier that labels *words* (see the module docstring).

    Args:
        model: e.g. ``AutoModelForTokenClassification.from_pretrained(name, num_labels=T)``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.

    Batches: :class:`HFCollator` dicts of :class:`HFTaggedDataset` items (``word_starts``, ``word_mask``,
    ``tags``).
    """

    def word_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of each word's first sub-token ``(N, W, C)`` and the word mask ``(N, W)``."""
        if "word_starts" not in batch or "word_mask" not in batch:
            raise ValueError(
                f"batch: HFTokenClassifier needs word_starts and word_mask (HFTaggedDataset items collated by "
                f"HFCollator), got keys {sorted(batch)}"
            )
        logits = self._subtoken_logits(batch)
        starts = batch["word_starts"].unsqueeze(-1).expand(-1, -1, logits.shape[-1])
        return logits.gather(1, starts), batch["word_mask"]

    def pool_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word logits and word mask: MNLP, entropy and BALD score words, not sub-tokens."""
        return self.word_logits(batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.word_logits(batch)[0]

    def decode(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Predicted tag ids per word of each sentence (truncated words get the first sub-token's prediction)."""
        logits, _ = self.word_logits(batch)
        lengths = (batch["tags"] != IGNORE).sum(1).tolist()
        return [row[:n] for row, n in zip(logits.argmax(-1).tolist(), lengths)]

    def _words(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, mask = self.word_logits(batch)
        keep = mask & (batch["tags"] >= 0)
        return logits[keep], batch["tags"][keep]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, target = self._words(batch)
        loss = nn.functional.cross_entropy(logits.float(), target)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["tags"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_eval("val", *self._words(batch))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._log_eval("test", *self._words(batch))
