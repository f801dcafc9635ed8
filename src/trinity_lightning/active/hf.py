"""Hugging Face transformers models in an active-learning campaign: sequence and token classification adapters.

A user's own pretrained model (``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification``)
runs in :class:`~trinity_lightning.active.ActiveLearning` with every heuristic, MNLP and BALD included:

* :class:`HFSequenceClassifier`: ``pool_logits`` ``(N, C)``; ``mc_logits`` ``n`` dropout passes ``(S, N, C)``.
* :class:`HFTokenClassifier`: the annotator labels *words*, the model sees *sub-tokens*. Each word's logits are
  those of its first sub-token, so ``pool_logits`` returns word logits ``(N, W, C)`` and a word mask ``(N, W)``
  (MNLP normalizes by the number of words, budgets count words), training uses the word tags on the first
  sub-tokens (the usual ``-100`` on the other sub-tokens, :func:`align_labels`), and predictions come back per
  word (:meth:`HFTokenClassifier.decode`, :func:`word_predictions`).

MC dropout is *consistent* (:class:`ConsistentDropout`): in one pool pass, sample ``s`` is one fixed network for
every example, whichever batch or split call it lands in and however much padding follows it, and every DDP rank
draws the same networks, which BatchBALD's joint entropy, EPIG and committee heuristics need. Every dropout of the
model is sampled (embeddings, hidden, classifier, and the attention probabilities of ``eager`` and ``sdpa``
attention); the deterministic path (``pool_logits``, eval mode) is untouched.

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
from torch.overrides import TorchFunctionMode
from torch.utils.data import Dataset

from trinity_lightning.active.scoring import _DropoutOn, is_dropout, sampled_passes

__all__ = [
    "ConsistentDropout",
    "HFCollator",
    "HFSequenceClassifier",
    "HFTaggedDataset",
    "HFTextDataset",
    "HFTokenClassifier",
    "align_labels",
    "consistent_keep",
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


_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # a 28-bit multiplier: products of 32-bit values stay below 2**60, exact in int64 on every device


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash, elementwise (int64 values in ``[0, 2**32)``)."""
    x = (((x >> 16) ^ x) * _MIX) & _M32
    x = (((x >> 16) ^ x) * _MIX) & _M32
    return (x >> 16) ^ x


def consistent_keep(
    seed: int, samples: range, layer: int, shape: Sequence[int], p: float, device: Any = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # fmt: skip
    """Scaled dropout keep masks ``(len(samples), *shape)`` (``0`` or ``1 / (1 - p)``), a pure function of
    ``(seed, sample, layer, coordinate)``.

    Each element is kept when a 32-bit hash of its key is at least ``p * 2**32``: no generator state, so the mask
    of a coordinate does not depend on how large ``shape`` is (a longer padded length only adds coordinates), on
    the order of calls, or on the device (the same bits on CPU and GPU, so every DDP rank draws the same networks).

    Example:
        >>> a = consistent_keep(0, range(3), 0, (5, 4), 0.5)
        >>> b = consistent_keep(0, range(1, 2), 0, (9, 4), 0.5)        # sample 1 alone, a longer sequence
        >>> torch.equal(a[1], b[0, :5]), sorted(a.unique().tolist())
        (True, [0.0, 2.0])
    """
    if p >= 1.0:
        return torch.zeros(len(samples), *shape, device=device, dtype=dtype)
    key = int(_mix(torch.tensor((int(seed) & _M32) ^ (int(layer) * 0x9E3779B9 & _M32))))
    h = _mix((torch.arange(samples.start, samples.stop, device=device) + key) & _M32)
    for size in shape:  # (samples, shape[0], ..., shape[d]): one coordinate more per step
        h = _mix((h.unsqueeze(-1) + torch.arange(size, device=device)) & _M32)
    return (h >= round(p * 2**32)).to(dtype) / (1.0 - p)


def _dropout_flag_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose ``training`` flag turns a dropout on: the dropout layers, and the modules that own one or
    hold a dropout probability (HF attention reads ``self.training`` to pass its ``dropout.p`` to the attention
    function; BART-like layers call ``F.dropout(..., training=self.training)`` with a float ``self.dropout``)."""
    out = []
    for module in model.modules():
        owns = any(is_dropout(child) for child in module.children())
        rate = any(
            "dropout" in name and isinstance(value, float) and not isinstance(value, bool) and value > 0
            for name, value in vars(module).items()
        )
        if is_dropout(module) or owns or rate:
            out.append(module)
    return out


_OTHER_DROPOUTS = (
    nn.functional.dropout1d,
    nn.functional.dropout2d,
    nn.functional.dropout3d,
    nn.functional.alpha_dropout,
    nn.functional.feature_alpha_dropout,
)


class ConsistentDropout(TorchFunctionMode):
    """Consistent MC dropout for a transformers model: while active, sample ``s`` is one fixed network for every
    example, in every batch and every split call, whatever the batch composition and the padded length.

    Every ``F.dropout`` (what ``nn.Dropout`` runs, and the functional dropout of eager attention) and the dropout
    inside ``F.scaled_dot_product_attention`` (HF's default ``sdpa`` attention, recomputed here in plain torch with
    the mask applied to the attention probabilities) multiplies its input by :func:`consistent_keep` masks keyed by
    ``(seed, sample, the call's position in the forward pass, coordinate)``. Coordinates are the positions and
    units of the input except the batch rows, so a token keeps its masks however much padding follows it (right
    padding, as :class:`HFCollator` pads; padded keys get zero attention, so their masks never matter).

    The rows of each forward call are ``count`` samples of ``n`` examples, samples first (as
    :func:`~trinity_lightning.active.scoring.sampled_passes` replicates a batch); :meth:`select` says which samples
    the next call carries. The context turns the model's dropout on (only the flags of the dropout layers and of
    the modules that gate a dropout on their own ``training`` flag; ``layerdrop`` is held at 0) and restores every
    flag when it exits, on an exception too.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
        >>> x = torch.randn(4, 3)
        >>> with ConsistentDropout(net, seed=0, n_examples=4) as masks:
        ...     masks.select(0, 2); both = net(x.repeat(2, 1)).reshape(2, 4, 2)   # samples 0 and 1 in one call
        ...     masks.select(1, 1); one = net(x)                                   # sample 1 alone
        >>> torch.allclose(both[1], one), net[1].training
        (True, False)
    """

    def __init__(self, model: nn.Module, seed: int, n_examples: int) -> None:
        super().__init__()
        self.model, self.seed, self.n = model, int(seed), int(n_examples)
        self.start, self.count, self.calls = 0, 1, 0

    def select(self, start: int, count: int) -> None:
        """The next forward call carries samples ``start .. start + count - 1`` (each ``n_examples`` rows)."""
        self.start, self.count, self.calls = start, count, 0

    def __enter__(self) -> ConsistentDropout:
        implementation = getattr(getattr(self.model, "config", None), "_attn_implementation", None)
        if implementation not in (None, "eager", "sdpa") and _attention_dropout(self.model) > 0:
            raise ValueError(
                f"model: attention implementation {implementation!r} cannot apply consistent MC dropout masks to the "
                "attention probabilities; load the model with attn_implementation='sdpa' (or 'eager')"
            )
        self.flags = [(m, m.training) for m in _dropout_flag_modules(self.model)]
        self.layerdrop: list[tuple[Any, float]] = [
            (m, float(getattr(m, "layerdrop", 0)))
            for m in self.model.modules()
            if _positive(getattr(m, "layerdrop", 0))
        ]
        for m, _ in self.flags:
            m.training = True
        for m, _ in self.layerdrop:
            m.layerdrop = 0.0
        try:
            super().__enter__()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._restore()

    def _restore(self) -> None:
        for m, mode in self.flags:
            m.training = mode
        for m, rate in self.layerdrop:
            m.layerdrop = rate

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is nn.functional.dropout:
            return self._dropout(*args, **kwargs)
        if func is nn.functional.scaled_dot_product_attention:
            return self._attention(*args, **kwargs)
        if func in _OTHER_DROPOUTS and kwargs.get("training", args[2] if len(args) > 2 else False):
            raise ValueError(
                f"model: {func.__name__} is not supported by consistent MC dropout (plain dropout and attention "
                "dropout are)"
            )
        return func(*args, **kwargs)

    def _keep(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """``x`` times its samples' masks (one mask per sample, shared by that sample's ``n`` rows)."""
        layer, self.calls = self.calls, self.calls + 1
        if x.ndim < 1 or x.shape[0] != self.count * self.n:
            raise ValueError(
                f"model: a dropout input of shape {tuple(x.shape)} does not have the batch rows first "
                f"({self.count} samples x {self.n} examples); consistent MC dropout cannot key its masks"
            )
        keep = consistent_keep(
            self.seed, range(self.start, self.start + self.count), layer, x.shape[1:], p, x.device, x.dtype
        )
        return (x.reshape(self.count, self.n, *x.shape[1:]) * keep.unsqueeze(1)).reshape(x.shape)

    def _dropout(self, input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
        if not training or p == 0:
            return nn.functional.dropout(input, p, training, inplace)
        return self._keep(input, p)

    def _attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
    ) -> torch.Tensor:  # fmt: skip
        if dropout_p == 0:
            return nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa
            )
        if key.ndim > 2 and key.shape[-3] != query.shape[-3]:  # grouped-query attention: repeat the kv heads
            key = key.repeat_interleave(query.shape[-3] // key.shape[-3], -3)
            value = value.repeat_interleave(query.shape[-3] // value.shape[-3], -3)
        scores = query @ key.transpose(-2, -1) * (query.shape[-1] ** -0.5 if scale is None else scale)
        lowest = torch.finfo(scores.dtype).min
        if is_causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~causal, lowest)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, lowest) if attn_mask.dtype == torch.bool else scores + attn_mask
        return self._keep(scores.softmax(-1), dropout_p) @ value


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _attention_dropout(model: nn.Module) -> float:
    config = getattr(model, "config", None)
    rates = [getattr(config, name, 0) for name in ("attention_probs_dropout_prob", "attention_dropout")]
    return max([float(r) for r in rates if _positive(r)], default=0.0)


class _Stacked(nn.Module):
    """The model on its inputs stacked into one tensor ``(N, K, L)`` (what ``sampled_passes`` replicates)."""

    def __init__(self, module: _HFModule, keys: list[str]) -> None:
        super().__init__()
        self.module, self.keys = module, keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module._subtoken_logits(dict(zip(self.keys, x.unbind(1))))


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

    def _from_subtokens(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Any:
        """The pool outputs of sub-token logits with any leading dimensions (``(..., N, L, C)`` or ``(..., N, C)``)."""
        raise NotImplementedError

    def mc_logits(
        self, batch: dict[str, torch.Tensor], n_samples: int, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n_samples`` MC-dropout passes: ``(S, N, ...)`` logits (and the word mask of a token classifier).

        The dropout masks are *consistent* (:class:`ConsistentDropout`): sample ``s`` is one network for every
        example, whichever batch it is in and however it is padded, and the same ``seed`` gives the same ``S``
        networks (one pool pass gives all its batches, and every DDP rank, one seed; ``None``: a fresh seed from
        torch's global generator). The samples run in calls of about
        :data:`~trinity_lightning.active.scoring.ROWS_PER_CALL` rows
        (:func:`~trinity_lightning.active.scoring.sampled_passes`); the model's dropout flags are restored after.
        """
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
        if not _dropout_flag_modules(self.model):
            _DropoutOn(self.model)  # its error: the model has no dropout at all
        keys = [k for k in _MODEL_INPUTS if k in batch]
        if "input_ids" not in keys:
            raise ValueError(f"batch: expected a dict with ['input_ids'] (use HFCollator), got keys {sorted(batch)}")
        x = torch.stack([batch[k].long() for k in keys], 1)
        with ConsistentDropout(self.model, seed, len(x)) as masks:
            logits, _ = sampled_passes(_Stacked(self, keys), x, n_samples, on_call=masks.select)
        out = self._from_subtokens(logits, batch)
        return out if isinstance(out, tuple) else (out, None)

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

    def _from_subtokens(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits

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
        self._check_words(batch)
        return self._from_subtokens(self._subtoken_logits(batch), batch)

    @staticmethod
    def _check_words(batch: dict[str, torch.Tensor]) -> None:
        if "word_starts" not in batch or "word_mask" not in batch:
            raise ValueError(
                f"batch: HFTokenClassifier needs word_starts and word_mask (HFTaggedDataset items collated by "
                f"HFCollator), got keys {sorted(batch)}"
            )

    def _from_subtokens(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Word logits ``(..., N, W, C)`` of sub-token logits ``(..., N, L, C)`` (any leading sample dims)."""
        self._check_words(batch)
        starts = batch["word_starts"].unsqueeze(-1).expand(*logits.shape[:-3], -1, -1, logits.shape[-1])
        return logits.gather(-2, starts), batch["word_mask"]

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
