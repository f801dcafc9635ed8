"""Numbers as decimal trees: ``2.5 = 2 * 10^0 + 5 * 10^-1`` (Arabshahi et al., ICLR 2018, section 3).

A number becomes an expression tree over digit leaves (``"0"``..``"9"``) and place-value leaves (``"10^e"``)
joined by the grammar's own ``add`` and ``mul`` symbols (negative numbers: ``mul -1 ...``), so a tree model reads
numbers compositionally with the same cells it uses for arithmetic.

Example:
    >>> enc = DecimalTreeEncoder(decimals=2, max_exponent=2)
    >>> enc.encode(2.5).sexpr()
    '(add (mul 2 10^0) (mul 5 10^-1))'
    >>> enc.decode(enc.encode(-13.07))
    -13.07
"""

from __future__ import annotations

import math

from trinity_lightning.equations.grammar import is_number
from trinity_lightning.equations.trees import Tree, TreeError

__all__ = ["DecimalTreeEncoder"]


class DecimalTreeEncoder:
    """Encode numbers as decimal trees and expand the numeric leaves of an expression.

    Args:
        decimals: digits after the decimal point (a number with more raises ``ValueError``).
        max_exponent: the largest place value is ``10^max_exponent``; ``|value| >= 10^(max_exponent+1)`` raises
            ``ValueError``.
        keep_integers: integers with ``|n| <= keep_integers`` stay single leaves in :meth:`expand` (``-1``, ``2``
            in ``x**2``); set ``-1`` to expand every number.
        own_symbols: build the trees from their own labels (``"num_add"``, ``"num_mul"``, digits ``"#0"``..``"#9"``
            and ``"#-1"``) instead of the grammar's ``add``/``mul`` and integer leaves, so that a model with one cell
            per symbol reads numbers with cells and embeddings of their own (place values ``10^e`` are always
            their own labels).

    Example:
        >>> DecimalTreeEncoder().expand(Tree.from_sexpr("(sin 0.5)")).sexpr()
        '(sin (mul 5 10^-1))'
        >>> DecimalTreeEncoder(own_symbols=True).encode(-0.6).sexpr()
        '(num_mul #-1 (num_mul #6 10^-1))'
    """

    def __init__(
        self, decimals: int = 2, max_exponent: int = 2, keep_integers: int = 9, own_symbols: bool = False
    ) -> None:
        if decimals < 0 or max_exponent < 0:
            raise ValueError(
                f"DecimalTreeEncoder: decimals and max_exponent must be >= 0, got {decimals}, {max_exponent}"
            )
        self.decimals, self.max_exponent, self.keep_integers = decimals, max_exponent, keep_integers
        self.own_symbols = own_symbols
        self.add, self.mul = ("num_add", "num_mul") if own_symbols else ("add", "mul")
        self._digit = "#" if own_symbols else ""

    def vocabulary(self) -> list[str]:
        """Every label :meth:`encode` can emit."""
        places = [f"10^{e}" for e in range(-self.decimals, self.max_exponent + 1)]
        return [self.add, self.mul, *(self._digit + str(d) for d in range(-1, 10)), *places]

    def encode(self, value: float) -> Tree:
        """The decimal tree of ``value``; raises ``ValueError`` outside the range or beyond ``decimals`` digits."""
        if not math.isfinite(value):
            raise ValueError(f"DecimalTreeEncoder: cannot encode {value!r} (not finite)")
        limit = 10 ** (self.max_exponent + 1)
        if abs(value) >= limit:
            raise ValueError(
                f"DecimalTreeEncoder: {value!r} is outside the encoder's range (|value| < {limit}); "
                f"raise max_exponent (now {self.max_exponent})"
            )
        scaled = abs(value) * 10**self.decimals
        q = round(scaled)
        if abs(scaled - q) > 1e-6 * max(1.0, scaled):
            raise ValueError(
                f"DecimalTreeEncoder: {value!r} has more than {self.decimals} decimals; round it or raise decimals"
            )
        if q == 0:
            return Tree(self._digit + "0")
        digits = str(q).zfill(self.decimals + 1)
        terms = []
        for k, ch in enumerate(digits):
            exponent = len(digits) - 1 - k - self.decimals
            if ch != "0":
                terms.append(Tree(self.mul, [Tree(self._digit + ch), Tree(f"10^{exponent}")]))
        tree = terms[0]
        for term in terms[1:]:
            tree = Tree(self.add, [tree, term])
        return Tree(self.mul, [Tree(self._digit + "-1"), tree]) if value < 0 else tree

    def decode(self, tree: Tree) -> float:
        """The number a decimal tree stands for (inverse of :meth:`encode`)."""
        label = tree.label
        if not tree.children:
            if label.startswith("10^"):
                return float(10.0 ** int(label[3:]))
            digit = label.removeprefix(self._digit)
            if is_number(digit):
                return float(digit)
            raise TreeError(f"DecimalTreeEncoder.decode: unexpected leaf {label!r}")
        a, b = (self.decode(c) for c in tree.children)
        if label == self.add:
            return round(a + b, self.decimals)
        if label == self.mul:
            return round(a * b, self.decimals)
        raise TreeError(f"DecimalTreeEncoder.decode: unexpected node {label!r}")

    def expand(self, tree: Tree) -> Tree:
        """A copy of ``tree`` whose numeric leaves (except small integers) are decimal trees."""

        def leaf(node: Tree) -> Tree:
            if not is_number(node.label):
                return Tree(node.label)
            value = float(node.label)
            if value.is_integer() and abs(value) <= self.keep_integers:
                return Tree(str(int(value)))
            return self.encode(value)

        return tree.map_leaves(leaf)
