"""Batched TreeLSTM (child-sum and N-ary cells, Tai et al. 2015) and a TreeNN cell, with per-node-type parameters.

Every node type (e.g. every function symbol) may have its own cell parameters, as in Arabshahi et al. (ICLR 2018).
:meth:`TreeLSTM.forward` evaluates a :class:`~.trees.TreeBatch` one *level* (node height) at a time, and inside a
level one *node type* at a time: a handful of batched matrix products per level, states gathered from a padded
child table and written back with ``index_copy_`` (a scatter). ``schedule="node"`` runs the same cells one node at
a time (the recursive reference the tests and the throughput benchmark compare against).

Example:
    >>> import torch
    >>> from trinity_lightning.equations.trees import Tree, collate_trees
    >>> vocab = {"add": 0, "x": 1, "y": 2}
    >>> batch = collate_trees([Tree.from_sexpr("(add x y)"), Tree("y")], vocab)
    >>> lstm = TreeLSTM(8, 16, cell="nary", arity=2)
    >>> h, c = lstm(batch, torch.randn(batch.num_nodes, 8))
    >>> h[batch.roots].shape
    torch.Size([2, 16])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from trinity_lightning.equations.trees import TreeBatch, TreeError

__all__ = ["TreeLSTM"]

Cell = Literal["childsum", "nary", "treenn"]


class TreeLSTM(nn.Module):
    """A TreeLSTM over batches of trees of any shapes.

    Args:
        input_size: size of each node's input vector ``x``.
        hidden_size: size of ``h`` and ``c``.
        cell: ``"childsum"`` (children summed, one forget gate per child: any number of children),
            ``"nary"`` (positional children, at most ``arity``; gates see every child's state) or ``"treenn"``
            (a plain recursive network ``h = tanh(W x + U [h_1..h_N] + b)``, no memory cell).
        arity: the largest number of children of the ``"nary"``/``"treenn"`` cells.
        node_types: number of separate parameter sets; pass ``node_types=`` to :meth:`forward` to pick one per node.

    Example:
        >>> lstm = TreeLSTM(4, 6, cell="childsum", node_types=3)
        >>> lstm.weight_x.shape
        torch.Size([3, 4, 18])
    """

    def __init__(
        self, input_size: int, hidden_size: int, cell: Cell = "childsum", arity: int = 2, node_types: int = 1
    ) -> None:
        super().__init__()
        if cell not in ("childsum", "nary", "treenn"):
            raise ValueError(f"TreeLSTM: cell={cell!r}; expected one of 'childsum', 'nary', 'treenn'")
        if input_size < 1 or hidden_size < 1 or arity < 1 or node_types < 1:
            raise ValueError(
                f"TreeLSTM: input_size, hidden_size, arity and node_types must be positive, got "
                f"{input_size}, {hidden_size}, {arity}, {node_types}"
            )
        self.input_size, self.hidden_size, self.cell, self.arity, self.node_types = (
            input_size,
            hidden_size,
            cell,
            arity,
            node_types,
        )
        H, T = hidden_size, node_types
        if cell == "childsum":
            gates, recurrent = 3 * H, H
        elif cell == "nary":
            gates, recurrent = 3 * H + arity * H, arity * H
        else:
            gates, recurrent = H, arity * H
        self.weight_x = nn.Parameter(torch.empty(T, input_size, gates))
        self.weight_h = nn.Parameter(torch.empty(T, recurrent, gates))
        self.bias = nn.Parameter(torch.empty(T, gates))
        if cell == "childsum":  # per-child forget gate f_k = sigmoid(W_f x + U_f h_k + b_f)
            self.weight_fx = nn.Parameter(torch.empty(T, input_size, H))
            self.weight_fh = nn.Parameter(torch.empty(T, H, H))
            self.bias_f = nn.Parameter(torch.empty(T, H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, as ``nn.LSTM``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    # ------------------------------------------------------------------------------------------------------------
    def _segments(
        self, batch: TreeBatch, node_types: torch.Tensor | None, schedule: str
    ) -> list[tuple[torch.Tensor | slice, int]]:
        """(nodes, type) groups in an order where every node comes after its children."""
        N = batch.num_nodes
        if schedule == "node":
            types = node_types.tolist() if node_types is not None else [0] * N
            return [(slice(i, i + 1), int(types[i])) for i in range(N)]
        if schedule != "level":
            raise ValueError(f"TreeLSTM: schedule={schedule!r}; expected 'level' or 'node'")
        if node_types is None or self.node_types == 1:
            return [(slice(s, e), 0) for s, e in batch.levels]
        sizes = torch.tensor([e - s for s, e in batch.levels], device=node_types.device)
        level = torch.repeat_interleave(torch.arange(len(batch.levels), device=node_types.device), sizes)
        key = level * self.node_types + node_types
        order = torch.argsort(key, stable=True)
        counts = torch.bincount(key, minlength=len(batch.levels) * self.node_types).tolist()
        out: list[tuple[torch.Tensor | slice, int]] = []
        start = 0
        for k, count in enumerate(counts):
            if count:
                out.append((order[start : start + count], k % self.node_types))
                start += count
        return out

    def forward(
        self,
        batch: TreeBatch,
        x: torch.Tensor,
        node_types: torch.Tensor | None = None,
        schedule: Literal["level", "node"] = "level",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """States of every node.

        Args:
            batch: the trees (:func:`~.trees.collate_trees`).
            x: ``[N, input_size]`` node inputs, in the batch's node order.
            node_types: ``[N]`` parameter set of each node (``0 <= type < node_types``); default all 0.
            schedule: ``"level"`` (batched) or ``"node"`` (one node at a time; same result, for reference).

        Returns:
            ``h, c``, each ``[N, hidden_size]`` (``c`` is zero for the ``"treenn"`` cell).
        """
        N, H = batch.num_nodes, self.hidden_size
        if x.shape != (N, self.input_size):
            raise ValueError(f"TreeLSTM: x must be [{N}, {self.input_size}] (nodes, input_size), got {tuple(x.shape)}")
        if node_types is not None:
            if node_types.shape != (N,):
                raise ValueError(f"TreeLSTM: node_types must be [{N}], got {tuple(node_types.shape)}")
            if N and (int(node_types.min()) < 0 or int(node_types.max()) >= self.node_types):
                raise ValueError(f"TreeLSTM: node_types must lie in [0, {self.node_types})")
        children = batch.children
        if self.cell != "childsum":
            too_many = batch.num_children > self.arity
            if bool(too_many.any()):
                i = int(too_many.nonzero()[0, 0])
                raise TreeError(
                    f"arity mismatch: node {i} (label id {int(batch.labels[i])}) has {int(batch.num_children[i])} "
                    f"children but the {self.cell!r} cell takes at most {self.arity}"
                )
            width = children.shape[1]
            if width < self.arity:
                pad = children.new_full((N, self.arity - width), N)
                children = torch.cat([children, pad], dim=1)
            else:
                children = children[:, : self.arity]
        h = x.new_zeros(N + 1, H)  # row N: the zero state of a missing child
        c = x.new_zeros(N + 1, H)
        for nodes, t in self._segments(batch, node_types, schedule):
            xs, ch = x[nodes], children[nodes]
            h_new, c_new = self._cell(xs, ch, h, c, t)
            if isinstance(nodes, slice):
                h[nodes] = h_new
                c[nodes] = c_new
            else:
                h.index_copy_(0, nodes, h_new)
                c.index_copy_(0, nodes, c_new)
        return h[:N], c[:N]

    def _cell(
        self, xs: torch.Tensor, ch: torch.Tensor, h: torch.Tensor, c: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.hidden_size
        hk, ck = h[ch], c[ch]  # [n, K, H]
        if self.cell == "childsum":
            g = xs @ self.weight_x[t] + hk.sum(1) @ self.weight_h[t] + self.bias[t]
            i, o, u = g.split(H, dim=1)
            f = torch.sigmoid((xs @ self.weight_fx[t] + self.bias_f[t]).unsqueeze(1) + hk @ self.weight_fh[t])
            c_new = torch.sigmoid(i) * torch.tanh(u) + (f * ck).sum(1)
            return torch.sigmoid(o) * torch.tanh(c_new), c_new
        g = xs @ self.weight_x[t] + hk.reshape(hk.shape[0], -1) @ self.weight_h[t] + self.bias[t]
        if self.cell == "treenn":
            h_new = torch.tanh(g)
            return h_new, torch.zeros_like(h_new)
        i, o, u = g[:, : 3 * H].split(H, dim=1)
        f = torch.sigmoid(g[:, 3 * H :]).reshape(-1, self.arity, H)
        c_new = torch.sigmoid(i) * torch.tanh(u) + (f * ck).sum(1)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new
