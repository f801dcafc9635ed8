"""A tree over the label set: atomic classes are its leaves, composite classes its internal nodes.

A binary question "is this a <node>?" asks whether an example's class lies under ``node``. The
:class:`ClassHierarchy` validates the tree (cycles, unknown leaves, a leaf under two parents), gives the
question set as a boolean ``(Q, C)`` mask, and can be *binarized* (every internal node with more than two
children is split into balanced halves) so that the naive annotator's binary search is well defined.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from trinity_lightning.data import DataFormatError

DEFAULT_ROOT = "(all)"


class ClassHierarchy:
    """A rooted tree whose leaves are the atomic classes (label ids in ``classes`` order).

    Args:
        parents: ``child -> parent`` map (a parent of ``None`` marks the root), or an iterable of
            ``(child, parent)`` pairs (which lets a node under two parents be detected and reported).
            Several top-level nodes are joined under an implicit root named ``"(all)"``.
        classes: the atomic classes in label-id order. Every one must be a leaf of the tree and every
            leaf must be one of them. Default: the leaves in order of first appearance.

    Attributes:
        classes: atomic class names (index = label id).
        root: the root node.
        children: ``node -> list of child nodes`` (leaves map to ``[]``).

    Raises:
        ValueError: on a cycle, a node with two parents, an unknown leaf, a class missing from the tree,
            or a class that has children.

    Example:
        >>> h = ClassHierarchy({"cat": "animal", "dog": "animal", "car": "vehicle",
        ...                     "animal": None, "vehicle": None}, classes=["cat", "dog", "car"])
        >>> h.composites, h.questions
        (['animal', 'vehicle'], ['animal', 'vehicle', 'cat', 'dog', 'car'])
        >>> h.question_masks().int().tolist()[0]
        [1, 1, 0]
    """

    def __init__(
        self, parents: Mapping[str, str | None] | Iterable[tuple[str, str | None]], classes: Sequence[str] | None = None
    ) -> None:
        pairs: list[tuple[Any, ...]] = (
            list(parents.items()) if isinstance(parents, Mapping) else [tuple(p) for p in parents]
        )
        parent_of: dict[str, str | None] = {}
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"parents: expected (child, parent) pairs, got {pair!r}")
            child, parent = pair
            if not isinstance(child, str) or (parent is not None and not isinstance(parent, str)):
                raise ValueError(f"parents: node names must be strings, got {child!r} -> {parent!r}")
            if child == parent:
                raise ValueError(f"parents: cycle: {child!r} is its own parent")
            if child in parent_of and parent_of[child] != parent:
                raise ValueError(
                    f"parents: {child!r} is under two parents ({parent_of[child]!r} and {parent!r}); "
                    "a class hierarchy must be a tree"
                )
            parent_of[child] = parent
        for parent in list(parent_of.values()):
            if parent is not None and parent not in parent_of:
                parent_of[parent] = None
        if not parent_of:
            raise ValueError("parents: the hierarchy is empty")
        self._check_cycles(parent_of)
        tops = [n for n, p in parent_of.items() if p is None]
        if len(tops) == 1:
            self.root = tops[0]
        else:
            if DEFAULT_ROOT in parent_of:
                raise ValueError(f"parents: several top-level nodes {tops} and a node named {DEFAULT_ROOT!r}")
            self.root = DEFAULT_ROOT
            for top in tops:
                parent_of[top] = DEFAULT_ROOT
            parent_of[DEFAULT_ROOT] = None
        self.parent: dict[str, str | None] = parent_of
        self.children: dict[str, list[str]] = {n: [] for n in parent_of}
        for child, parent in pairs:  # keep the user's child order
            if parent is not None and child not in self.children[parent]:
                self.children[parent].append(child)
        for child, parent in parent_of.items():
            if parent is not None and child not in self.children[parent]:
                self.children[parent].append(child)
        leaves = [n for n in self._preorder() if not self.children[n]]
        if classes is None:
            self.classes = leaves
        else:
            self.classes = [str(c) for c in classes]
            if len(set(self.classes)) != len(self.classes):
                dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
                raise ValueError(f"classes: duplicate names {dup}")
            for c in self.classes:
                if c not in parent_of:
                    raise ValueError(f"classes: {c!r} does not appear in the hierarchy")
                if self.children[c]:
                    raise ValueError(f"classes: {c!r} has children {self.children[c]}; atomic classes must be leaves")
            unknown = [leaf for leaf in leaves if leaf not in set(self.classes)]
            if unknown:
                raise ValueError(f"parents: leaves {unknown} are not in classes; add them to classes or remove them")
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._leafsets = self._compute_leafsets()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_nested(cls, tree: Mapping[str, Any], classes: Sequence[str] | None = None) -> ClassHierarchy:
        """Build from a nested dict: ``{node: {child: ...} | [leaf, ...] | None}``.

        Example:
            >>> h = ClassHierarchy.from_nested({"animal": {"mammal": ["cat", "dog"], "bird": None}, "car": None})
            >>> h.classes, h.composites
            (['cat', 'dog', 'bird', 'car'], ['animal', 'mammal'])
        """
        pairs: list[tuple[str, str | None]] = []
        seen: dict[str, str | None] = {}

        def add(node: Any, parent: str | None) -> None:
            if not isinstance(node, str):
                raise ValueError(f"tree: node names must be strings, got {node!r} under {parent!r}")
            if node in seen:
                raise ValueError(
                    f"tree: {node!r} appears twice (under {seen[node]!r} and {parent!r}); "
                    "a class hierarchy must be a tree"
                )
            seen[node] = parent
            pairs.append((node, parent))

        def walk(sub: Any, parent: str | None) -> None:
            if sub is None:
                return
            if isinstance(sub, str):
                add(sub, parent)
            elif isinstance(sub, Mapping):
                for name, below in sub.items():
                    add(name, parent)
                    walk(below, name)
            elif isinstance(sub, (list, tuple)):
                for item in sub:
                    walk(item, parent)
            else:
                raise ValueError(f"tree: expected a dict, a list or a name under {parent!r}, got {type(sub).__name__}")

        if not isinstance(tree, Mapping):
            raise ValueError(f"tree: expected a dict, got {type(tree).__name__}")
        walk(tree, None)
        return cls(pairs, classes)

    @classmethod
    def from_json(cls, path: str | Path) -> ClassHierarchy:
        """Read ``{"parents": {child: parent}, "classes": [...]}`` or ``{"tree": {...}, "classes": [...]}``.

        Raises:
            DataFormatError: naming the file and the field when the file is malformed.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataFormatError(f"invalid JSON: {err.msg}", source=path, line=err.lineno) from err
        if not isinstance(data, Mapping) or not ({"parents", "tree"} & set(data)):
            raise DataFormatError("expected an object with a 'parents' or a 'tree' field", source=path)
        classes = data.get("classes")
        field = "parents" if "parents" in data else "tree"
        try:
            if field == "parents":
                parents = data["parents"]
                if isinstance(parents, Mapping):
                    return cls(parents, classes)
                return cls([tuple(p) for p in parents], classes)
            return cls.from_nested(data["tree"], classes)
        except (ValueError, TypeError) as err:
            raise DataFormatError(str(err), source=path, field=field) from err

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready ``{"parents": ..., "classes": ...}`` that :meth:`from_json` reads back."""
        return {"classes": list(self.classes), "parents": {n: p for n, p in self.parent.items() if p is not None}}

    # ------------------------------------------------------------------ structure
    @property
    def num_classes(self) -> int:
        """Number of atomic classes."""
        return len(self.classes)

    @property
    def composites(self) -> list[str]:
        """Internal nodes except the root (every non-trivial composite class), in pre-order."""
        return [n for n in self._preorder() if self.children[n] and n != self.root]

    @property
    def questions(self) -> list[str]:
        """The askable nodes: composites (pre-order), then the atomic classes (label order)."""
        return self.composites + list(self.classes)

    def leaves_under(self, node: str) -> list[str]:
        """The atomic classes under ``node`` (label order)."""
        if node not in self._leafsets:
            raise KeyError(f"node: {node!r} is not in the hierarchy")
        return [self.classes[i] for i in sorted(self._leafsets[node])]

    def question_masks(self, include_classes: bool = True) -> torch.Tensor:
        """Boolean ``(Q, C)``: row ``q`` marks the classes under question ``q`` (see :attr:`questions`)."""
        names = self.questions if include_classes else self.composites
        mask = torch.zeros(len(names), self.num_classes, dtype=torch.bool)
        for q, name in enumerate(names):
            mask[q, sorted(self._leafsets[name])] = True
        return mask

    def depth(self, node: str) -> int:
        """Number of edges from the root to ``node``."""
        d, current = 0, self.parent[node]
        while current is not None:
            d, current = d + 1, self.parent[current]
        return d

    def is_binary(self) -> bool:
        """True when every internal node has exactly two children."""
        return all(len(c) in (0, 2) for c in self.children.values())

    def compressed(self) -> ClassHierarchy:
        """Drop internal nodes with a single child (they split nothing), including a chain above the root."""
        pairs: list[tuple[str, str | None]] = []
        top = self.root
        while len(self.children[top]) == 1:
            top = self.children[top][0]

        def walk(node: str, parent: str | None) -> None:
            kids = self.children[node]
            if len(kids) == 1:
                walk(kids[0], parent)
                return
            pairs.append((node, parent))
            for kid in kids:
                walk(kid, node)

        walk(top, None)
        return ClassHierarchy(pairs, self.classes)

    def binarized(self) -> ClassHierarchy:
        """Split every node with more than two children into a binary subtree (Huffman by leaf count).

        Merging the two lightest groups first minimises the expected number of yes/no questions a
        top-down annotator needs under a uniform class prior. New nodes are named after their members,
        e.g. ``"bird | frog"``.

        Example:
            >>> h = ClassHierarchy.from_nested({"a": None, "b": None, "c": None}).binarized()
            >>> h.is_binary(), h.composites
            (True, ['a | b'])
        """
        pairs: list[tuple[str, str | None]] = []
        used = set(self.parent)

        def fresh(name: str) -> str:
            candidate, k = name, 2
            while candidate in used:
                candidate, k = f"{name} #{k}", k + 1
            used.add(candidate)
            return candidate

        def walk(node: str, parent: str | None) -> None:
            pairs.append((node, parent))
            kids = self.children[node]
            if len(kids) <= 2:
                for kid in kids:
                    walk(kid, node)
                return
            heap: list[tuple[int, int, str, list[Any]]] = []
            for order, kid in enumerate(kids):
                heapq.heappush(heap, (len(self._leafsets[kid]), order, kid, []))
            counter = len(kids)
            groups: dict[str, list[str]] = {}
            while len(heap) > 2:
                w1, _, a, _ = heapq.heappop(heap)
                w2, _, b, _ = heapq.heappop(heap)
                name = fresh(" | ".join(self._short(x, groups) for x in (a, b)))
                groups[name] = [a, b]
                heapq.heappush(heap, (w1 + w2, counter, name, []))
                counter += 1
            tops = sorted(heap, key=lambda item: item[1])

            def emit(name: str, under: str) -> None:
                if name in groups:
                    pairs.append((name, under))
                    for part in groups[name]:
                        emit(part, name)
                else:
                    walk(name, under)

            for item in tops:
                emit(item[2], node)

        walk(self.root, None)
        return ClassHierarchy(pairs, self.classes)

    # ------------------------------------------------------------------ helpers
    def _short(self, node: str, groups: Mapping[str, list[str]]) -> str:
        return node if node in groups else node.split(".n.")[0].replace("_", " ")

    @staticmethod
    def _check_cycles(parent_of: Mapping[str, str | None]) -> None:
        done: set[str] = set()
        for start in parent_of:
            path: list[str] = []
            on_path: set[str] = set()
            node: str | None = start
            while node is not None and node not in done:
                if node in on_path:
                    cycle = [*path[path.index(node) :], node]
                    raise ValueError(f"parents: cycle {' -> '.join(cycle)}")
                on_path.add(node)
                path.append(node)
                node = parent_of.get(node)
            done.update(path)

    def _preorder(self) -> list[str]:
        order, stack = [], [self.root]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(reversed(self.children[node]))
        return order

    def _compute_leafsets(self) -> dict[str, frozenset[int]]:
        sets: dict[str, frozenset[int]] = {}
        for node in reversed(self._preorder()):
            kids = self.children[node]
            sets[node] = frozenset({self._index[node]}) if not kids else frozenset().union(*(sets[k] for k in kids))
        return sets

    def __repr__(self) -> str:
        return f"ClassHierarchy({self.num_classes} classes, {len(self.composites)} composites, root={self.root!r})"
