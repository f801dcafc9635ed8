"""EquationVerifier: a LightningModule that verifies equations and predicts the values of function evaluations.

Each side of ``lhs = rhs`` is encoded (a TreeLSTM with one cell per function symbol, a TreeNN, or a BiLSTM over the
prefix form, for comparison); the two encodings are compared (``[l * r, |l - r|]`` -> MLP -> logit, or, with
``comparator="dot"``, the official code's dot product plus a bias). Numbers are
decimal trees (:class:`~.decimal.DecimalTreeEncoder`, the default) or, with ``number_encoding="value_leaf"`` (the
official code's encoding), single ``<num>`` leaves embedded by a small feed-forward network of their value. A value
head reads the left side of a function evaluation (``sin(2.5)``) and regresses its value, trained on the true ones.

Example:
    >>> from trinity_lightning.equations.grammar import parse_equation
    >>> model = EquationVerifier(hidden_size=8)
    >>> probs = model.predict_proba([parse_equation("x + 0 = x"), parse_equation("sin(2.5) = 0.6", kind="function")])
    >>> probs.shape
    torch.Size([2])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

from trinity_lightning.equations.decimal import DecimalTreeEncoder
from trinity_lightning.equations.grammar import FUNCTIONS, Equation, is_number
from trinity_lightning.equations.treelstm import TreeLSTM
from trinity_lightning.equations.trees import Tree, TreeBatch, collate_trees

__all__ = ["NUMBER_LEAF", "EquationBatch", "EquationVerifier", "NumberLeafVocabulary", "equation_vocabulary"]

Encoder = Literal["treelstm", "treenn", "bilstm"]
NumberEncoding = Literal["decimal_tree", "value_leaf"]
NUMBER_LEAF = "<num>"  # the label every number outside the vocabulary gets with ``number_encoding="value_leaf"``


NUMBER_OPS = ("num_add", "num_mul")  # a decimal tree's own operators (``own_number_symbols=True``)


def equation_vocabulary(
    variables: Sequence[str], decimals: int = 2, max_exponent: int = 2, own_number_symbols: bool = False
) -> list[str]:
    """Every label an equation tree can hold once its numbers are decimal trees.

    ``own_number_symbols`` adds the decimal trees' own operators and digits (:class:`~.decimal.DecimalTreeEncoder`).

    Example:
        >>> voc = equation_vocabulary(["x"], decimals=1, max_exponent=0)
        >>> voc[:3], "10^-1" in voc, len(voc)
        (['<pad>', 'add', 'cos'], True, 35)
        >>> len(equation_vocabulary(["x"], decimals=1, max_exponent=0, own_number_symbols=True))
        48
    """
    places = [f"10^{e}" for e in range(-decimals, max_exponent + 1)]
    own = [*NUMBER_OPS, *(f"#{d}" for d in range(-1, 10))] if own_number_symbols else []
    return ["<pad>", *sorted(FUNCTIONS), "pi", *(str(i) for i in range(-9, 10)), *places, *variables, *own]


class NumberLeafVocabulary(Mapping[str, int]):
    """A vocabulary that sends every number it does not hold itself (``2.5``, ``-0.6``, ``15``) to one id.

    Small integers of the grammar (``-9``..``9``) keep their own ids; the value of a number leaf travels beside the
    label (``TreeBatch.values``), so a model can embed it by value (``number_encoding="value_leaf"``).

    Example:
        >>> voc = NumberLeafVocabulary({"<pad>": 0, "x": 1, "2": 2, "<num>": 3})
        >>> voc["x"], voc["2"], voc["2.5"], voc["-0.6"], "y" in voc
        (1, 2, 3, 3, False)
    """

    def __init__(self, base: Mapping[str, int], number_label: str = NUMBER_LEAF) -> None:
        if number_label not in base:
            raise ValueError(f"NumberLeafVocabulary: {number_label!r} is not in the base vocabulary")
        self.base, self.number_id = dict(base), base[number_label]

    def __getitem__(self, label: str) -> int:
        if label in self.base:
            return self.base[label]
        if is_number(label):
            return self.number_id
        raise KeyError(label)

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and (label in self.base or is_number(label))

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def number_features(values: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` inputs of the value network: ``value / 10`` and ``sign(value) * log1p(|value|)``.

    Example:
        >>> [[round(v, 3) for v in row] for row in number_features(torch.tensor([0.0, -2.5])).tolist()]
        [[0.0, 0.0], [-0.25, -1.253]]
    """
    return torch.stack([values / 10.0, values.sign() * values.abs().log1p()], dim=-1)


@dataclass
class EquationBatch:
    """A collated batch: both sides of ``B`` equations as ``2B`` trees (left sides first) and as prefix tokens."""

    trees: TreeBatch
    tokens: torch.Tensor  # [2B, L] prefix ids, 0-padded
    lengths: torch.Tensor  # [2B]
    labels: torch.Tensor  # [B] float 0/1
    values: torch.Tensor  # [B] value of a true function evaluation, NaN otherwise
    is_function: torch.Tensor  # [B] bool
    depths: torch.Tensor  # [B]
    token_values: torch.Tensor | None = None  # [2B, L] value of each prefix token read as a number, NaN otherwise

    def to(self, device: torch.device | str) -> EquationBatch:
        return EquationBatch(
            self.trees.to(device),
            self.tokens.to(device),
            self.lengths.to(device),
            self.labels.to(device),
            self.values.to(device),
            self.is_function.to(device),
            self.depths.to(device),
            None if self.token_values is None else self.token_values.to(device),
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class EquationVerifier(pl.LightningModule):
    """Verify equations (binary cross-entropy) and predict function values (smooth L1 on the true evaluations).

    Args:
        encoder: ``"treelstm"``, ``"treenn"`` (a recursive network without memory cells) or ``"bilstm"`` (the
            sequence baseline, on the prefix form).
        cell: TreeLSTM cell, ``"nary"`` (binary, positional; the paper's) or ``"childsum"``.
        hidden_size: size of the node states (and of the embeddings).
        per_type_cells: one set of cell parameters per function symbol (the paper's), else one shared cell.
        variables: the variable names the vocabulary holds.
        decimals, max_exponent: the decimal-tree encoder's range.
        value_weight: weight of the value-regression loss.
        own_number_symbols: decimal trees get their own operators and digit leaves (with ``per_type_cells``, one
            cell each for ``num_add`` and ``num_mul``) instead of sharing the algebra's ``add``/``mul`` cells and the
            integer leaves' embeddings (``number_encoding="decimal_tree"`` only).
        number_encoding: ``"decimal_tree"`` (numbers outside ``-9..9`` become decimal trees, the paper's text) or
            ``"value_leaf"`` (the official code's: each such number is one ``<num>`` leaf whose embedding is a small
            feed-forward network of its value, :func:`number_features` -> ``Linear`` -> ``tanh`` -> ``Linear``; no
            range limit). Integers ``-9..9`` keep their symbol embeddings either way.
        comparator: how the two sides' encodings ``l, r`` become a logit. ``"mlp"`` (default):
            ``[l * r, |l - r|]`` -> MLP. ``"dot"``: the official code's ``Equality`` node (ForoughA/neuralMath,
            ``nnTreeMain.py``): the dot product ``l . r`` plus a learned bias, no other parameter, so a side pair is
            called true exactly when its encodings align.
        lr, weight_decay: Adam.

    Example:
        >>> from trinity_lightning.equations.grammar import parse_equation
        >>> model = EquationVerifier(hidden_size=8, number_encoding="value_leaf")
        >>> model.collate([parse_equation("sin(2.5) = 0.6", kind="function")]).trees.num_nodes
        3
    """

    def __init__(
        self,
        encoder: Encoder = "treelstm",
        cell: Literal["nary", "childsum"] = "nary",
        hidden_size: int = 64,
        per_type_cells: bool = True,
        variables: Sequence[str] = ("x", "y", "z"),
        decimals: int = 2,
        max_exponent: int = 2,
        value_weight: float = 0.5,
        own_number_symbols: bool = False,
        number_encoding: NumberEncoding = "decimal_tree",
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        comparator: Literal["mlp", "dot"] = "mlp",
    ) -> None:
        super().__init__()
        if comparator not in ("mlp", "dot"):
            raise ValueError(f"EquationVerifier: comparator={comparator!r}; expected 'mlp' or 'dot'")
        if encoder not in ("treelstm", "treenn", "bilstm"):
            raise ValueError(f"EquationVerifier: encoder={encoder!r}; expected 'treelstm', 'treenn' or 'bilstm'")
        if number_encoding not in ("decimal_tree", "value_leaf"):
            raise ValueError(
                f"EquationVerifier: number_encoding={number_encoding!r}; expected 'decimal_tree' or 'value_leaf'"
            )
        if number_encoding == "value_leaf" and own_number_symbols:
            raise ValueError(
                "EquationVerifier: own_number_symbols applies to decimal trees; with number_encoding='value_leaf' "
                "numbers are value leaves (set own_number_symbols=False)"
            )
        self.save_hyperparameters()
        vocabulary = equation_vocabulary(list(variables), decimals, max_exponent, own_number_symbols)
        if number_encoding == "value_leaf":
            vocabulary.append(NUMBER_LEAF)
        self.vocab: Mapping[str, int] = {label: i for i, label in enumerate(vocabulary)}
        self.value_leaf = number_encoding == "value_leaf"
        if self.value_leaf:
            self.vocab = NumberLeafVocabulary(self.vocab)
        self.decimal = DecimalTreeEncoder(decimals=decimals, max_exponent=max_exponent, own_symbols=own_number_symbols)
        H = hidden_size
        self.embed = nn.Embedding(len(self.vocab), H, padding_idx=0)
        functions = sorted(FUNCTIONS) + (list(NUMBER_OPS) if own_number_symbols else [])
        cell_of = torch.zeros(len(self.vocab), dtype=torch.long)  # leaves: cell 0; function f: its own cell
        if per_type_cells:
            for k, name in enumerate(functions, start=1):
                cell_of[self.vocab[name]] = k
        self.register_buffer("cell_of", cell_of, persistent=False)
        n_types = len(functions) + 1 if per_type_cells else 1
        self.tree: TreeLSTM | None = None
        self.lstm: nn.LSTM | None = None
        if encoder == "bilstm":
            self.lstm = nn.LSTM(H, H, batch_first=True, bidirectional=True)
            self.project = nn.Linear(2 * H, H)
        else:
            kind = "treenn" if encoder == "treenn" else cell
            self.tree = TreeLSTM(H, H, cell=kind, arity=2, node_types=n_types)
        self.compare = nn.Sequential(nn.Linear(2 * H, H), nn.ReLU(), nn.Linear(H, 1)) if comparator == "mlp" else None
        self.dot_bias = nn.Parameter(torch.zeros(())) if comparator == "dot" else None
        self.value_head = nn.Sequential(nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 1))
        self.number_net = nn.Sequential(nn.Linear(2, H), nn.Tanh(), nn.Linear(H, H)) if self.value_leaf else None

    # -- data -------------------------------------------------------------------------------------------------------
    def collate(self, equations: Sequence[Equation]) -> EquationBatch:
        """Collate equations (numbers expanded to decimal trees, or kept as value leaves) into an
        :class:`EquationBatch`."""
        expand = (lambda t: t) if self.value_leaf else self.decimal.expand
        sides: list[Tree] = [expand(e.lhs) for e in equations]
        sides += [expand(e.rhs) for e in equations]
        trees = collate_trees(sides, self.vocab, max_children=2, source="equation side")
        prefix_labels = [side.prefix() for side in sides]
        prefixes = [[self.vocab[label] for label in labels] for labels in prefix_labels]
        width = max(len(p) for p in prefixes)
        tokens = torch.zeros(len(prefixes), width, dtype=torch.long)
        token_values = torch.full((len(prefixes), width), math.nan) if self.value_leaf else None
        for i, p in enumerate(prefixes):
            tokens[i, : len(p)] = torch.tensor(p)
            if token_values is not None:
                token_values[i, : len(p)] = torch.tensor(
                    [float(label) if is_number(label) else math.nan for label in prefix_labels[i]]
                )
        values = [
            float(e.rhs.label) if e.kind == "function" and e.label and not e.rhs.children else math.nan
            for e in equations
        ]
        return EquationBatch(
            trees=trees,
            tokens=tokens,
            lengths=torch.tensor([len(p) for p in prefixes]),
            labels=torch.tensor([float(e.label) for e in equations]),
            values=torch.tensor(values, dtype=torch.float32),
            is_function=torch.tensor([e.kind == "function" for e in equations]),
            depths=torch.tensor([e.depth for e in equations]),
            token_values=token_values,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, list):
            return self.collate(batch)
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, EquationBatch):
            return batch.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- model ------------------------------------------------------------------------------------------------------
    def embed_labels(self, ids: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
        """Label embeddings; with ``number_encoding="value_leaf"`` every ``<num>`` leaf is embedded by the value
        network of its value instead."""
        x = self.embed(ids)
        if self.number_net is None or values is None:
            return x
        is_num = ids == self.vocab[NUMBER_LEAF]
        if not bool(is_num.any()):
            return x
        x = x.clone()
        x[is_num] = self.number_net(number_features(values[is_num])).to(x.dtype)
        return x

    def encode(self, batch: EquationBatch) -> torch.Tensor:
        """``[2B, H]``: the encoding of every side (left sides first)."""
        if self.lstm is not None:
            x = self.embed_labels(batch.tokens, batch.token_values)
            packed = nn.utils.rnn.pack_padded_sequence(x, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
            return torch.tanh(self.project(torch.cat([h[0], h[1]], dim=1)))
        assert self.tree is not None
        trees = batch.trees
        x = self.embed_labels(trees.labels, trees.values)
        cell_of: torch.Tensor = self.cell_of  # type: ignore[assignment]
        types = cell_of[trees.labels] if self.tree.node_types > 1 else None
        h, _ = self.tree(trees, x, types)
        return h[trees.roots]

    def forward(self, batch: EquationBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B]`` (true vs false) and predicted values ``[B]`` of the left sides."""
        sides = self.encode(batch)
        B = len(batch)
        left, right = sides[:B], sides[B:]
        if self.compare is None:  # the official code's Equality node: l . r + b
            assert self.dot_bias is not None
            logits = (left * right).sum(dim=1) + self.dot_bias
        else:
            logits = self.compare(torch.cat([left * right, (left - right).abs()], dim=1)).squeeze(1)
        return logits, self.value_head(left).squeeze(1)

    def _step(self, batch: EquationBatch, stage: str) -> torch.Tensor:
        logits, values = self(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
        has_value = ~batch.values.isnan()
        if bool(has_value.any()) and self.hparams["value_weight"] > 0:
            value_loss = F.smooth_l1_loss(values[has_value], batch.values[has_value])
            loss = loss + self.hparams["value_weight"] * value_loss
            self.log(
                f"{stage}_value_mae", (values[has_value] - batch.values[has_value]).abs().mean(), batch_size=len(batch)
            )
        acc = ((logits > 0).float() == batch.labels).float().mean()
        self.log(f"{stage}_loss", loss, batch_size=len(batch), prog_bar=stage == "train")
        self.log(f"{stage}_acc", acc, batch_size=len(batch), prog_bar=stage != "train")
        return loss

    def training_step(self, batch: EquationBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: EquationBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: EquationBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: EquationBatch, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch)[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])

    # -- inference helpers ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, equations: Sequence[Equation], batch_size: int = 256) -> torch.Tensor:
        """Probability that each equation holds (eval mode, no gradient; the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            out = [
                torch.sigmoid(self(self.collate(equations[i : i + batch_size]).to(self.device))[0]).cpu()
                for i in range(0, len(equations), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def predict_value(self, expressions: Sequence[Tree], batch_size: int = 256) -> torch.Tensor:
        """Predicted value of each expression (a function-evaluation query such as ``sin(2.5)``)."""
        queries = [Equation(e, Tree("0"), True, "function") for e in expressions]
        was_training = self.training
        self.eval()
        try:
            out = [
                self(self.collate(queries[i : i + batch_size]).to(self.device))[1].cpu()
                for i in range(0, len(queries), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)
