"""A small tree type for any tree data (expressions, parse trees, ASTs) and the level schedule that batches them.

:class:`Tree` is a labelled node with an ordered list of children. :func:`collate_trees` packs many trees of
different shapes into one :class:`TreeBatch`: nodes ordered by height (leaves first), so that every node of a
level depends only on nodes of earlier levels, plus a padded child table. :class:`~.treelstm.TreeLSTM` runs one
batched step per level (and per node type), never one Python step per node.

Example:
    >>> t = Tree.from_sexpr("(add x (sin y))")
    >>> t.height(), t.size(), t.prefix()
    (2, 4, ['add', 'x', 'sin', 'y'])
    >>> batch = collate_trees([t, Tree("x")], vocab={"add": 0, "sin": 1, "x": 2, "y": 3})
    >>> batch.num_nodes, batch.levels, batch.roots.tolist()
    (5, [(0, 3), (3, 4), (4, 5)], [4, 2])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Tree", "TreeBatch", "TreeError", "collate_trees"]

_BAD_LABEL = re.compile(r"[\s()]")


class TreeError(ValueError):
    """A malformed tree: a cycle, a shared node, an arity mismatch, an unknown label or a bad s-expression."""


class Tree:
    """A labelled node with ordered children; leaves have no children.

    Trees compare equal when their labels and shapes are equal (``hash`` agrees). Children are a plain list, so a
    tree can be built bottom-up or edited; :meth:`nodes` (and :func:`collate_trees`) refuse a "tree" whose nodes
    form a cycle or share a node (the same object reached twice).

    Args:
        label: the node's symbol (``"add"``, ``"sin"``, ``"x"``, ``"2.5"``...).
        children: the ordered children.

    Example:
        >>> Tree("add", [Tree("x"), Tree("1")]).sexpr()
        '(add x 1)'
    """

    __slots__ = ("children", "label")

    def __init__(self, label: str, children: Sequence[Tree] = ()) -> None:
        if not isinstance(label, str) or not label or _BAD_LABEL.search(label):
            raise TreeError(f"Tree label must be a non-empty string without spaces or parentheses, got {label!r}")
        self.label = label
        self.children: list[Tree] = list(children)

    # -- traversal ------------------------------------------------------------------------------------------------
    def nodes(self) -> list[Tree]:
        """All nodes in post-order (children before parents); raises :class:`TreeError` on a cycle or shared node."""
        out: list[Tree] = []
        seen: set[int] = set()
        on_path: set[int] = set()
        stack: list[tuple[Tree, int]] = [(self, 0)]
        seen.add(id(self))
        on_path.add(id(self))
        while stack:
            node, k = stack[-1]
            if k < len(node.children):
                stack[-1] = (node, k + 1)
                child = node.children[k]
                if not isinstance(child, Tree):
                    raise TreeError(f"child {k} of node {node.label!r} is a {type(child).__name__}, not a Tree")
                if id(child) in on_path:
                    raise TreeError(f"cycle: node {child.label!r} is its own ancestor (child {k} of {node.label!r})")
                if id(child) in seen:
                    raise TreeError(
                        f"shared node: {child.label!r} (child {k} of {node.label!r}) is reached twice; "
                        "a tree cannot share nodes, copy the subtree (Tree.copy())"
                    )
                seen.add(id(child))
                on_path.add(id(child))
                stack.append((child, 0))
            else:
                stack.pop()
                on_path.discard(id(node))
                out.append(node)
        return out

    def height(self) -> int:
        """Edges on the longest root-to-leaf path (a leaf has height 0)."""
        heights: dict[int, int] = {}
        for node in self.nodes():
            heights[id(node)] = 1 + max((heights[id(c)] for c in node.children), default=-1)
        return heights[id(self)]

    def size(self) -> int:
        """Number of nodes."""
        return len(self.nodes())

    def prefix(self) -> list[str]:
        """Labels in pre-order (the linearised form a sequence model reads)."""
        self.nodes()  # validate
        out: list[str] = []
        stack = [self]
        while stack:
            node = stack.pop()
            out.append(node.label)
            stack.extend(reversed(node.children))
        return out

    def sexpr(self) -> str:
        """The s-expression ``(label child ...)``, leaves bare: the exact text form :meth:`from_sexpr` reads."""
        text: dict[int, str] = {}
        for node in self.nodes():
            if node.children:
                text[id(node)] = "(" + " ".join([node.label, *(text[id(c)] for c in node.children)]) + ")"
            else:
                text[id(node)] = node.label
        return text[id(self)]

    def copy(self) -> Tree:
        """A deep copy (new node objects)."""
        made: dict[int, Tree] = {}
        for node in self.nodes():
            made[id(node)] = Tree(node.label, [made[id(c)] for c in node.children])
        return made[id(self)]

    def map_leaves(self, fn: Callable[[Tree], Tree]) -> Tree:
        """A copy where every leaf is replaced by ``fn(leaf)``."""
        made: dict[int, Tree] = {}
        for node in self.nodes():
            if node.children:
                made[id(node)] = Tree(node.label, [made[id(c)] for c in node.children])
            else:
                made[id(node)] = fn(node)
        return made[id(self)]

    def subtrees(self) -> Iterator[tuple[tuple[int, ...], Tree]]:
        """``(path, node)`` for every node in pre-order; ``path`` is the child indices from the root."""
        stack: list[tuple[tuple[int, ...], Tree]] = [((), self)]
        while stack:
            path, node = stack.pop()
            yield path, node
            for k in range(len(node.children) - 1, -1, -1):
                stack.append(((*path, k), node.children[k]))

    def get(self, path: Sequence[int]) -> Tree:
        """The node at ``path`` (child indices from the root)."""
        node = self
        for k in path:
            node = node.children[k]
        return node

    def replace(self, path: Sequence[int], new: Tree) -> Tree:
        """A copy with the node at ``path`` replaced by ``new`` (the other subtrees are shared with ``self``)."""
        if not path:
            return new
        k, rest = path[0], path[1:]
        children = list(self.children)
        children[k] = children[k].replace(rest, new)
        return Tree(self.label, children)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_sexpr(cls, text: str, arity: Mapping[str, int] | None = None) -> Tree:
        """Parse ``(label child ...)``; with ``arity``, a known label must have that many children.

        Raises :class:`TreeError` naming the character position of a syntax error or the offending label.
        """
        tokens: list[tuple[int, str]] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch.isspace():
                i += 1
            elif ch in "()":
                tokens.append((i, ch))
                i += 1
            else:
                j = i
                while j < len(text) and not text[j].isspace() and text[j] not in "()":
                    j += 1
                tokens.append((i, text[i:j]))
                i = j
        if not tokens:
            raise TreeError("empty s-expression")
        pos = 0

        def parse() -> Tree:
            nonlocal pos
            if pos >= len(tokens):
                raise TreeError(f"unexpected end of s-expression {text!r}")
            at, tok = tokens[pos]
            pos += 1
            if tok == ")":
                raise TreeError(f"unexpected ')' at character {at + 1} of {text!r}")
            if tok != "(":
                return cls(tok)
            if pos >= len(tokens) or tokens[pos][1] in "()":
                raise TreeError(f"expected a label after '(' at character {at + 1} of {text!r}")
            label = tokens[pos][1]
            pos += 1
            children = []
            while pos < len(tokens) and tokens[pos][1] != ")":
                children.append(parse())
            if pos >= len(tokens):
                raise TreeError(f"unclosed '(' at character {at + 1} of {text!r}")
            pos += 1
            return cls(label, children)

        tree = parse()
        if pos != len(tokens):
            raise TreeError(f"trailing text at character {tokens[pos][0] + 1} of {text!r}")
        if arity is not None:
            check_arity(tree, arity)
        return tree

    @classmethod
    def from_parents(cls, labels: Sequence[str], parents: Sequence[int]) -> Tree:
        """Build a tree from node labels and each node's parent index (``-1`` for the root), children in index order.

        Raises :class:`TreeError` for several roots, no root, a parent index out of range, or a cycle.

        Example:
            >>> Tree.from_parents(["add", "x", "y"], [-1, 0, 0]).sexpr()
            '(add x y)'
        """
        if len(labels) != len(parents):
            raise TreeError(f"from_parents: {len(labels)} labels but {len(parents)} parents")
        roots = [i for i, p in enumerate(parents) if p == -1]
        if len(roots) != 1:
            raise TreeError(f"from_parents: expected exactly one root (parent -1), found {len(roots)}: nodes {roots}")
        for i, p in enumerate(parents):
            if p != -1 and not 0 <= p < len(labels):
                raise TreeError(f"from_parents: node {i} has parent {p}, outside [0, {len(labels)})")
            if p == i:
                raise TreeError(f"from_parents: cycle, node {i} is its own parent")
        nodes = [cls(label) for label in labels]
        for i, p in enumerate(parents):
            if p != -1:
                nodes[p].children.append(nodes[i])
        root = nodes[roots[0]]
        reached = len(root.nodes())  # raises on a cycle reachable from the root
        if reached != len(labels):
            raise TreeError(f"from_parents: cycle, {len(labels) - reached} node(s) are not connected to the root")
        return root

    # -- dunder ---------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Tree({self.sexpr()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and self.sexpr() == other.sexpr()

    def __hash__(self) -> int:
        return hash(self.sexpr())


def check_arity(tree: Tree, arity: Mapping[str, int]) -> None:
    """Raise :class:`TreeError` if a node whose label is in ``arity`` has a different number of children.

    Example:
        >>> check_arity(Tree.from_sexpr("(sin x y)"), {"sin": 1})
        Traceback (most recent call last):
        ...
        trinity_lightning.equations.trees.TreeError: arity mismatch: 'sin' takes 1 child(ren), got 2 in (sin x y)
    """
    for node in tree.nodes():
        want = arity.get(node.label)
        if want is not None and want != len(node.children):
            raise TreeError(
                f"arity mismatch: {node.label!r} takes {want} child(ren), got {len(node.children)} in {node.sexpr()}"
            )


@dataclass
class TreeBatch:
    """Many trees packed for level-by-level evaluation (built by :func:`collate_trees`).

    Nodes are numbered ``0..num_nodes-1`` in order of height (all leaves first), so ``levels[h] = (start, end)``
    is the contiguous range of the nodes of height ``h``.

    Attributes:
        labels: ``[N]`` vocabulary id of each node's label.
        children: ``[N, K]`` child node ids in order, padded with ``N`` (a zero state row); ``K`` is the largest
            number of children in the batch (at least 1).
        num_children: ``[N]``.
        levels: ``(start, end)`` node range per height.
        roots: ``[B]`` node id of each tree's root.
        tree_of: ``[N]`` index of the tree each node belongs to.
        heights: ``[B]`` each tree's height.
        values: ``[N]`` the node's label read as a number, NaN when it is not one.
    """

    labels: torch.Tensor
    children: torch.Tensor
    num_children: torch.Tensor
    levels: list[tuple[int, int]]
    roots: torch.Tensor
    tree_of: torch.Tensor
    heights: torch.Tensor
    values: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_trees(self) -> int:
        return int(self.roots.shape[0])

    def to(self, device: torch.device | str) -> TreeBatch:
        """The batch on ``device``."""
        return TreeBatch(
            self.labels.to(device),
            self.children.to(device),
            self.num_children.to(device),
            self.levels,
            self.roots.to(device),
            self.tree_of.to(device),
            self.heights.to(device),
            self.values.to(device),
        )


def _number(label: str) -> float:
    try:
        return float(label)
    except ValueError:
        return float("nan")


def collate_trees(
    trees: Sequence[Tree], vocab: Mapping[str, int], max_children: int | None = None, source: str = "tree"
) -> TreeBatch:
    """Pack ``trees`` into one :class:`TreeBatch` ordered by node height.

    Args:
        trees: the trees (any shapes).
        vocab: label -> id; an unknown label raises :class:`TreeError` naming the tree and the label.
        max_children: if given, a node with more children raises :class:`TreeError` (an N-ary cell's arity).
        source: how errors name the trees (``"tree"`` -> ``"tree 3"``).

    Example:
        >>> b = collate_trees([Tree.from_sexpr("(sin x)")], {"sin": 0, "x": 1})
        >>> b.labels.tolist(), b.children.tolist()
        ([1, 0], [[2], [0]])
    """
    if not trees:
        raise TreeError("collate_trees: no trees")
    records: list[tuple[int, int, int, Tree]] = []  # (height, tree index, post-order index, node)
    child_ids: dict[int, list[int]] = {}
    heights_of: list[int] = []
    roots_obj: list[Tree] = []
    for t, tree in enumerate(trees):
        if not isinstance(tree, Tree):
            raise TreeError(f"{source} {t}: expected a Tree, got {type(tree).__name__}")
        try:
            nodes = tree.nodes()
        except TreeError as err:
            raise TreeError(f"{source} {t}: {err}") from None
        height: dict[int, int] = {}
        for k, node in enumerate(nodes):
            if node.label not in vocab:
                raise TreeError(f"{source} {t}: unknown label {node.label!r} (not in the vocabulary of {len(vocab)})")
            if max_children is not None and len(node.children) > max_children:
                raise TreeError(
                    f"{source} {t}: arity mismatch, node {node.label!r} has {len(node.children)} children but the "
                    f"cell takes at most {max_children}"
                )
            h = 1 + max((height[id(c)] for c in node.children), default=-1)
            height[id(node)] = h
            records.append((h, t, k, node))
        heights_of.append(height[id(tree)])
        roots_obj.append(tree)
    records.sort(key=lambda r: (r[0], r[1], r[2]))
    index = {id(r[3]): i for i, r in enumerate(records)}
    n = len(records)
    width = max(1, max(len(r[3].children) for r in records))
    children = torch.full((n, width), n, dtype=torch.long)
    for i, (_, _, _, node) in enumerate(records):
        ids = [index[id(c)] for c in node.children]
        child_ids[i] = ids
        if ids:
            children[i, : len(ids)] = torch.tensor(ids)
    level_of = [r[0] for r in records]
    levels: list[tuple[int, int]] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or level_of[i] != level_of[start]:
            levels.append((start, i))
            start = i
    return TreeBatch(
        labels=torch.tensor([vocab[r[3].label] for r in records], dtype=torch.long),
        children=children,
        num_children=torch.tensor([len(r[3].children) for r in records], dtype=torch.long),
        levels=levels,
        roots=torch.tensor([index[id(root)] for root in roots_obj], dtype=torch.long),
        tree_of=torch.tensor([r[1] for r in records], dtype=torch.long),
        heights=torch.tensor(heights_of, dtype=torch.long),
        values=torch.tensor([_number(r[3].label) for r in records], dtype=torch.float32),
    )
