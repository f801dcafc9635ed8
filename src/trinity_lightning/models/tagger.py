"""The CNN-CNN-LSTM tagger of Shen et al. (ICLR 2018) and entity-level F1 with the CoNLL rules.

Character CNN -> word CNN encoder -> unidirectional LSTM tag decoder that reads the previous tag and
decodes greedily. Batches are dicts ``{"words": (N, T), "chars": (N, T, L), "tags": (N, T),
"mask": (N, T)}`` (see :func:`trinity_lightning.active.ner.collate_tagged`).

The only dropout sits between the encoder and the decoder, so Monte-Carlo dropout (BALD) runs the
encoder once per batch and samples only the decoder (:meth:`Tagger.mc_logits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

__all__ = ["CNNCNNLSTM", "EntityF1", "Tagger", "entity_spans"]


def _split_tag(tag: str) -> tuple[str, str]:
    if tag in ("O", "", "-X-"):
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if not kind:
        return "I", prefix  # bare type: treated as inside (conlleval does the same for IOB1 files)
    return prefix, kind


def _ends(prev_p: str, prev_t: str, p: str, t: str) -> bool:
    """conlleval's endOfChunk: does a chunk end between the previous and this tag?"""
    if prev_p in ("E", "S"):
        return True
    if prev_p in ("B", "I"):
        return p in ("B", "S", "O") or t != prev_t
    return False


def _starts(prev_p: str, prev_t: str, p: str, t: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this tag?"""
    if p in ("B", "S"):
        return True
    if p in ("I", "E"):
        return prev_p in ("E", "S", "O") or prev_t != t
    return False


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end_exclusive)`` in a tag sequence (IOB1, IOB2 or BIOES), conlleval rules.

    An ``I-X`` after ``O`` or after another type starts a new entity, as in conlleval and seqeval's
    default mode.

    Example:
        >>> sorted(entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]))
        [('LOC', 3, 4), ('LOC', 4, 5), ('ORG', 5, 6), ('PER', 0, 2)]
    """
    spans: set[tuple[str, int, int]] = set()
    prev_p, prev_t, start = "O", "", -1
    for i, tag in enumerate([*tags, "O"]):
        p, t = _split_tag(tag)
        if start >= 0 and _ends(prev_p, prev_t, p, t):
            spans.add((prev_t, start, i))
            start = -1
        if _starts(prev_p, prev_t, p, t):
            start = i
        prev_p, prev_t = p, t
    return spans


class EntityF1(Metric):
    """Micro entity-level F1 (exact span and type), accumulated over batches of tag ids.

    Args:
        tag_names: tag name of each tag id (e.g. ``["O", "B-PER", "I-PER", ...]``).

    Example:
        >>> f1 = EntityF1(["O", "B-PER", "I-PER"])
        >>> f1.update(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 2, 0]]), torch.tensor([[True, True, True]]))
        >>> f1.update(torch.tensor([[1, 0, 0]]), torch.tensor([[1, 2, 0]]), torch.tensor([[True, True, True]]))
        >>> round(f1.compute().item(), 4)
        0.5
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, tag_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag_names = list(tag_names)
        self.correct: torch.Tensor
        self.predicted: torch.Tensor
        self.gold: torch.Tensor
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        lengths = mask.sum(-1).tolist()
        names = self.tag_names
        for p_row, t_row, n in zip(preds.tolist(), target.tolist(), lengths):
            pred = entity_spans([names[i] for i in p_row[:n]])
            gold = entity_spans([names[i] for i in t_row[:n]])
            self.correct += len(pred & gold)
            self.predicted += len(pred)
            self.gold += len(gold)

    def compute(self) -> torch.Tensor:
        precision = self.correct / self.predicted.clamp_min(1)
        recall = self.correct / self.gold.clamp_min(1)
        return (2 * precision * recall / (precision + recall).clamp_min(1e-12)).float()


class CNNCNNLSTM(nn.Module):
    """Character CNN + word CNN encoder + greedy LSTM tag decoder.

    Args:
        num_words: word vocabulary size (id 0 = padding, 1 = unknown).
        num_chars: character vocabulary size (id 0 = padding).
        num_tags: number of tags.
        word_dim: word embedding size.
        char_dim: character embedding size.
        char_channels: character CNN filters (the character feature size).
        word_channels: channels of each word CNN layer.
        kernel_size: width of every convolution.
        tag_dim: embedding size of the previous tag read by the decoder.
        hidden: LSTM decoder size.
        dropout: dropout between encoder and decoder (the only stochastic layer; MC dropout samples it).

    Example:
        >>> net = CNNCNNLSTM(num_words=50, num_chars=30, num_tags=5, word_channels=(16,), hidden=8)
        >>> words, chars = torch.randint(1, 50, (2, 7)), torch.randint(1, 30, (2, 7, 4))
        >>> net(words, chars, torch.randint(0, 5, (2, 7))).shape, net.greedy(net.encode(words, chars)).shape
        (torch.Size([2, 7, 5]), torch.Size([2, 7, 5]))
    """

    def __init__(
        self,
        num_words: int,
        num_chars: int,
        num_tags: int,
        word_dim: int = 100,
        char_dim: int = 25,
        char_channels: int = 50,
        word_channels: Sequence[int] = (300, 300),
        kernel_size: int = 3,
        tag_dim: int = 25,
        hidden: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (("num_words", num_words), ("num_chars", num_chars), ("num_tags", num_tags)):
            if value < 1:
                raise ValueError(f"{name}: expected a positive size, got {value}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd width (same-length convolutions), got {kernel_size}")
        self.num_tags = num_tags
        pad = kernel_size // 2
        self.word_emb = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.char_emb = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.char_conv = nn.Conv1d(char_dim, char_channels, kernel_size, padding=pad)
        width = word_dim + char_channels
        convs, previous = [], width
        for channels in word_channels:
            convs.append(nn.Conv1d(previous, channels, kernel_size, padding=pad))
            previous = channels
        self.word_convs = nn.ModuleList(convs)
        self.encoder_dim = width + (previous if word_channels else 0)
        self.dropout = nn.Dropout(dropout)
        self.tag_emb = nn.Embedding(num_tags + 1, tag_dim)  # the last id is the <start> tag
        self.lstm = nn.LSTM(self.encoder_dim + tag_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_tags)

    def encode(self, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
        """Deterministic encoder output ``(N, T, D)`` (zero on padding)."""
        n, t, length = chars.shape
        mask = (words != 0).unsqueeze(-1)
        c = self.char_emb(chars.reshape(n * t, length)).transpose(1, 2)
        c = self.char_conv(c).masked_fill((chars.reshape(n * t, 1, length) == 0), float("-inf"))
        c = c.amax(-1).reshape(n, t, -1)
        c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
        x = torch.cat([self.word_emb(words), c], -1) * mask
        h = x.transpose(1, 2)
        for conv in self.word_convs:
            h = torch.relu(conv(h)) * mask.transpose(1, 2)
        return torch.cat([x, h.transpose(1, 2)], -1) if self.word_convs else x

    def forward(self, words: torch.Tensor, chars: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(N, T, C)``: the decoder reads the gold previous tag."""
        enc = self.dropout(self.encode(words, chars))
        start = torch.full_like(tags[:, :1], self.num_tags)
        previous = torch.cat([start, tags[:, :-1].clamp_min(0)], 1)
        h, _ = self.lstm(torch.cat([enc, self.tag_emb(previous)], -1))
        return self.out(h)

    def greedy(self, enc: torch.Tensor) -> torch.Tensor:
        """Greedy decoding from (already dropped-out) encoder output: logits ``(N, T, C)`` of each step."""
        n, t, _ = enc.shape
        previous = torch.full((n,), self.num_tags, dtype=torch.long, device=enc.device)
        state: tuple[torch.Tensor, torch.Tensor] | None = None
        steps = []
        for i in range(t):
            step_in = torch.cat([enc[:, i], self.tag_emb(previous)], -1).unsqueeze(1)
            h, state = self.lstm(step_in, state)
            logits = self.out(h[:, 0])
            steps.append(logits)
            previous = logits.argmax(-1)
        return torch.stack(steps, 1) if steps else enc.new_zeros(n, 0, self.num_tags)


class Tagger(pl.LightningModule):
    """LightningModule around :class:`CNNCNNLSTM`: cross-entropy training, greedy decoding, entity F1.

    Sizes left as ``None`` are read from the DataModule in ``configure_model`` (``num_words``,
    ``num_chars`` and ``tag_names`` attributes of :class:`~trinity_lightning.active.ner.ConllDataModule`),
    so a YAML recipe need not repeat the vocabulary. Logs ``train_loss``, ``val_f1``, ``test_f1`` (0..1).

    Args:
        num_words: word vocabulary size.
        num_chars: character vocabulary size.
        tag_names: tag name per tag id.
        lr: Adam learning rate.
        grad_clip: clip the gradient norm to this (0: off).
        net_kwargs: more :class:`CNNCNNLSTM` arguments (``word_channels``, ``hidden``, ``dropout``...).

    Example:
        >>> tagger = Tagger(num_words=20, num_chars=10, tag_names=["O", "B-PER", "I-PER"],
        ...                 net_kwargs={"word_channels": [8], "hidden": 8})
        >>> batch = {"words": torch.randint(1, 20, (2, 5)), "chars": torch.randint(1, 10, (2, 5, 3)),
        ...          "tags": torch.zeros(2, 5, dtype=torch.long), "mask": torch.ones(2, 5, dtype=torch.bool)}
        >>> logits, mask = tagger.pool_logits(batch); logits.shape
        torch.Size([2, 5, 3])
        >>> tagger.mc_logits(batch, 4)[0].shape
        torch.Size([4, 2, 5, 3])
    """

    def __init__(
        self,
        num_words: int | None = None,
        num_chars: int | None = None,
        tag_names: Sequence[str] | None = None,
        lr: float = 1e-3,
        grad_clip: float = 5.0,
        net_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: CNNCNNLSTM | None = None
        self.val_f1: EntityF1 | None = None
        self.test_f1: EntityF1 | None = None
        if num_words is not None and num_chars is not None and tag_names is not None:
            self._build(num_words, num_chars, list(tag_names))

    def _build(self, num_words: int, num_chars: int, tag_names: list[str]) -> None:
        self.hparams.update(num_words=num_words, num_chars=num_chars, tag_names=tag_names)
        self.net = CNNCNNLSTM(num_words, num_chars, len(tag_names), **(self.hparams.get("net_kwargs") or {}))
        self.val_f1 = EntityF1(tag_names)
        self.test_f1 = EntityF1(tag_names)

    def configure_model(self) -> None:
        if self.net is not None:
            return
        dm = getattr(self.trainer, "datamodule", None)
        sizes = {k: getattr(dm, k, None) for k in ("num_words", "num_chars", "tag_names")}
        missing = [k for k, v in sizes.items() if v is None]
        if missing:
            raise ValueError(
                f"Tagger: {missing} not given and the DataModule does not provide them; pass "
                "them to Tagger(...) or use ConllDataModule"
            )
        self._build(int(sizes["num_words"]), int(sizes["num_chars"]), list(sizes["tag_names"]))  # type: ignore[arg-type]

    def _net(self) -> CNNCNNLSTM:
        if self.net is None:
            raise RuntimeError("Tagger: the network is built in configure_model (or pass the sizes)")
        return self.net

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Greedy-decoded logits ``(N, T, C)``."""
        net = self._net()
        return net.greedy(net.dropout(net.encode(batch["words"], batch["chars"])))

    def pool_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the greedy path and the padding mask, for the query strategies."""
        return self(batch), batch["mask"]

    def mc_logits(self, batch: dict[str, torch.Tensor], n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, T, C)`` MC-dropout greedy logits: encoder once, decoder on ``S`` dropout samples at once."""
        net = self._net()
        if net.dropout.p <= 0:
            raise ValueError("strategy: BALD needs dropout, but this Tagger has dropout=0")
        enc = net.encode(batch["words"], batch["chars"])
        n = enc.shape[0]
        sampled = nn.functional.dropout(enc.repeat(n_samples, 1, 1), net.dropout.p, training=True)
        logits = net.greedy(sampled)
        return logits.reshape(n_samples, n, *logits.shape[1:]), batch["mask"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        net = self._net()
        logits = net(batch["words"], batch["chars"], batch["tags"])
        mask = batch["mask"]
        loss = nn.functional.cross_entropy(logits[mask], batch["tags"][mask])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(mask))
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], metric: EntityF1 | None, name: str) -> None:
        assert metric is not None
        metric.update(self(batch).argmax(-1), batch["tags"], batch["mask"])
        self.log(name, metric, prog_bar=name == "val_f1", batch_size=len(batch["mask"]))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_f1, "val_f1")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_f1, "test_f1")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        clip = gradient_clip_val or self.hparams["grad_clip"]
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
