"""EquationGenerator: true identities by rewriting with axioms, false candidates by local mutations, function
evaluations, all labelled by a numeric check (Arabshahi et al., ICLR 2018; neuralMath's generator, in Python 3).

- *True identities.* Start from :data:`AXIOMS` (algebra + trigonometry). Repeatedly take a known identity, pick a
  sub-expression, and replace it by an equal one: an axiom side that matches it (axiom variables are pattern
  variables; unbound ones get a random leaf), or substitute a variable by a small expression. Every new identity
  is re-checked numerically (a rewrite whose check fails, e.g. ``exp(log(x)) = x`` for ``x < 0``, is counted and
  dropped).
- *False candidates.* A local change of a known identity: shrink a node to a child, replace a symbol by one of
  the same arity, grow a node (wrap it in a function), or apply the same operation to both sides. The numeric
  check labels each: candidates that happen to hold are kept as *true* (counted as ``mutation_true``).
- *Function evaluations.* ``sin(2.5) = 0.6``: a function at a random point, the value rounded to ``decimals``;
  false ones carry a perturbed value.
- Points where a side is undefined are dropped; an equation with too few valid points is a *domain* skip, never
  a label. Equations are deduplicated modulo variable renaming and swapping sides; everything is drawn from one
  ``numpy`` generator seeded by ``seed``, so a seed gives the same equations.

Example:
    >>> gen = EquationGenerator(seed=0, max_depth=3)
    >>> eqs = gen.generate(per_depth=20, functions=10)
    >>> sorted({e.depth for e in eqs if e.kind == "symbolic"}), gen.report["function_true"]
    ([1, 2, 3], 5)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trinity_lightning.data.errors import DataFormatError
from trinity_lightning.equations.grammar import (
    FUNCTIONS,
    Equation,
    evaluate,
    is_number,
    numeric_check,
    parse_equation,
    validate_expression,
    variables,
)
from trinity_lightning.equations.trees import Tree, TreeError

__all__ = [
    "AXIOMS",
    "RESTRICTED_AXIOMS",
    "EquationGenerator",
    "domain_fraction",
    "read_jsonl",
    "restricted_domain_equations",
    "write_jsonl",
]

AXIOMS: tuple[str, ...] = (
    # algebra
    "x + y = y + x",
    "x*y = y*x",
    "x + 0 = x",
    "x*1 = x",
    "x*0 = 0",
    "x + (y + z) = (x + y) + z",
    "x*(y*z) = (x*y)*z",
    "x*(y + z) = x*y + x*z",
    "(x + y)*z = x*z + y*z",
    "x**1 = x",
    "x**2 = x*x",
    "x**(y + z) = x**y * x**z",
    "(x**y)**2 = x**(2*y)",
    "x + x = 2*x",
    "x - x = 0",
    "x*x**(-1) = 1",
    "(x + y)**2 = x**2 + 2*x*y + y**2",
    "(x + y)*(x - y) = x**2 - y**2",
    "1 + 1 = 2",
    "2 + 1 = 3",
    "2*2 = 4",
    "2 + 2 = 4",
    "3 - 1 = 2",
    "exp(x + y) = exp(x)*exp(y)",
    "exp(0) = 1",
    "log(exp(x)) = x",
    "log(1) = 0",
    "exp(x)**2 = exp(2*x)",
    "exp(-x) = exp(x)**(-1)",
    # trigonometry
    "sin(x)**2 + cos(x)**2 = 1",
    "tan(x) = sin(x)/cos(x)",
    "cot(x) = cos(x)/sin(x)",
    "sec(x) = 1/cos(x)",
    "csc(x) = 1/sin(x)",
    "tan(x)*cot(x) = 1",
    "sin(-x) = -sin(x)",
    "cos(-x) = cos(x)",
    "tan(-x) = -tan(x)",
    "sin(2*x) = 2*sin(x)*cos(x)",
    "cos(2*x) = cos(x)**2 - sin(x)**2",
    "cos(2*x) = 1 - 2*sin(x)**2",
    "cos(2*x) = 2*cos(x)**2 - 1",
    "sin(x + y) = sin(x)*cos(y) + cos(x)*sin(y)",
    "cos(x + y) = cos(x)*cos(y) - sin(x)*sin(y)",
    "sin(x - y) = sin(x)*cos(y) - cos(x)*sin(y)",
    "1 + tan(x)**2 = sec(x)**2",
    "1 + cot(x)**2 = csc(x)**2",
    "sin(0) = 0",
    "cos(0) = 1",
    "tan(0) = 0",
    "sin(pi) = 0",
    "cos(pi) = -1",
    "sin(x + pi) = -sin(x)",
    "cos(x + pi) = -cos(x)",
    "sin(pi - x) = sin(x)",
    "sin(x + 2*pi) = sin(x)",
    "cos(x + 2*pi) = cos(x)",
    "sin(pi/2 - x) = cos(x)",
    "cos(pi/2 - x) = sin(x)",
)
"""Seed identities (sympy syntax); their variables are pattern variables when rewriting."""

RESTRICTED_AXIOMS: tuple[str, ...] = (
    "log(x*y) = log(x) + log(y)",  # x, y > 0
    "log(x**2) = 2*log(x)",  # x > 0
    "log(x**y) = y*log(x)",  # x > 0
    "exp(log(x)) = x",  # x > 0
    "exp(log(x - 1)) = x - 1",  # x > 1
    "(x**0.5)**2 = x",  # x >= 0 (square root)
    "x**0.5*x**0.5 = x",  # x >= 0
    "(x*y)**0.5 = x**0.5*y**0.5",  # x, y >= 0
    "log(x**0.5) = log(x)/2",  # x > 0
    "log(sin(x)) + log(csc(x)) = 0",  # sin(x) > 0
    "log(cos(x)) + log(sec(x)) = 0",  # cos(x) > 0
    "log(tan(x)) = log(sin(x)) - log(cos(x))",  # sin(x), cos(x) > 0
    "tan(x)**0.5*cot(x)**0.5 = 1",  # tan(x) > 0, poles
    "log(tan(x)) + log(cot(x)) = 0",  # tan(x) > 0, poles
)
"""Identities that hold only on a restricted domain (a logarithm, a square root of a quantity that can be
negative, poles): :func:`restricted_domain_equations` grows its split from them."""

_UNARY = sorted(name for name, k in FUNCTIONS.items() if k == 1)
_BINARY = sorted(name for name, k in FUNCTIONS.items() if k == 2)
_EVAL_FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "csc", "sec", "cot")


def _match(pattern: Tree, tree: Tree, names: frozenset[str], binding: dict[str, Tree]) -> bool:
    if not pattern.children and pattern.label in names:
        bound = binding.get(pattern.label)
        if bound is None:
            binding[pattern.label] = tree
            return True
        return bound == tree
    if pattern.label != tree.label or len(pattern.children) != len(tree.children):
        return False
    return all(_match(p, t, names, binding) for p, t in zip(pattern.children, tree.children))


class EquationGenerator:
    """Generate labelled equations, deterministic for a seed.

    Args:
        seed: seed of the one random generator.
        max_depth: deepest equation kept (depth = the larger height of the two sides).
        variables: variable names used in new leaves.
        integers: integers used in new leaves.
        decimals: rounding of function-evaluation arguments and values.
        points: random points of each numeric check.
        axioms: seed identities (sympy syntax).
        arg_decimals: rounding of function-evaluation arguments only (``None``: ``decimals``). With ``decimals=2``
            there are 601 arguments in [-3, 3] per function, so at most about 4,500 distinct true evaluations
            exist (about 4,490 for ``seed=0``); ``arg_decimals=3`` gives ten times as many (values still rounded
            to ``decimals``).

    Attributes:
        report: counts of what was generated and skipped (``domain_skipped``: too few points where both sides
            are defined; ``duplicate``; ``depth_skipped``; ``rewrite_failed_check``; ``mutation_true``; ...) and,
            per depth that got all it asked for, the try that filled it (``filled_depth_<d>_at_try``).
    """

    def __init__(
        self,
        seed: int = 0,
        max_depth: int = 4,
        variables: Iterable[str] = ("x", "y", "z"),
        integers: Iterable[int] = (-1, 0, 1, 2, 3),
        decimals: int = 2,
        points: int = 8,
        axioms: Iterable[str] = AXIOMS,
        arg_decimals: int | None = None,
    ) -> None:
        if max_depth < 1:
            raise ValueError(f"EquationGenerator: max_depth must be >= 1, got {max_depth}")
        self.seed, self.max_depth, self.decimals, self.points = seed, max_depth, decimals, points
        if arg_decimals is not None and arg_decimals < 0:
            raise ValueError(f"EquationGenerator: arg_decimals must be >= 0 or None, got {arg_decimals}")
        self.arg_decimals = decimals if arg_decimals is None else arg_decimals
        self.variables = tuple(variables)
        self.integers = tuple(str(i) for i in integers)
        self.rng = np.random.default_rng(seed)
        self.report: Counter[str] = Counter()
        self.axioms = [parse_equation(text) for text in axioms]
        self.rules: list[tuple[Tree, Tree, frozenset[str]]] = []
        for ax in self.axioms:
            names = frozenset(variables_of(ax))
            self.rules.append((ax.lhs, ax.rhs, names))
            self.rules.append((ax.rhs, ax.lhs, names))
        self._rules_by_root: dict[str, list[int]] = {}
        self._wildcards: list[int] = []
        for k, (pattern, _, names) in enumerate(self.rules):
            if not pattern.children and pattern.label in names:
                self._wildcards.append(k)
            else:
                self._rules_by_root.setdefault(pattern.label, []).append(k)

    # -- random pieces ----------------------------------------------------------------------------------------------
    def _choice(self, items: list[Any] | tuple[Any, ...]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def _choice_among(self, lists: list[list[Any]]) -> Any:
        """``self._choice`` of the lists' concatenation (the same draw), without building it: the pools of known
        identities hold tens of thousands of equations at the data-scale study's sizes."""
        k = int(self.rng.integers(sum(len(items) for items in lists)))
        for items in lists:
            if k < len(items):
                return items[k]
            k -= len(items)
        raise AssertionError("unreachable")

    def _leaf(self) -> Tree:
        return Tree(self._choice(self.variables) if self.rng.random() < 0.6 else self._choice(self.integers))

    def _small(self) -> Tree:
        """A leaf, or a function of leaves (height 1)."""
        if self.rng.random() < 0.5:
            return self._leaf()
        name = self._choice(_UNARY + _BINARY)
        return Tree(name, [self._leaf() for _ in range(FUNCTIONS[name])])

    def _check(self, lhs: Tree, rhs: Tree) -> bool | None:
        return numeric_check(lhs, rhs, self.rng, points=self.points)

    # -- true identities by rewriting ------------------------------------------------------------------------------
    def rewrite(self, eq: Equation) -> Equation | None:
        """One equal-by-construction rewrite of ``eq`` (an axiom applied to a sub-expression, or a substitution)."""
        side = int(self.rng.integers(2))
        tree = (eq.lhs, eq.rhs)[side]
        if self.rng.random() < 0.15:  # substitute a variable everywhere by a small expression
            present = variables_of(eq)
            if not present:
                return None
            old, small = self._choice(present), self._small()
            return Equation(_substitute(eq.lhs, {old: small}), _substitute(eq.rhs, {old: small}))
        nodes = list(tree.subtrees())
        path, node = nodes[int(self.rng.integers(len(nodes)))]
        candidates = self._rules_by_root.get(node.label, [])
        if not candidates or self.rng.random() < 0.25:
            candidates = self._wildcards
        order = self.rng.permutation(len(candidates))[:8]
        for k in order:
            pattern, result, names = self.rules[candidates[int(k)]]
            binding: dict[str, Tree] = {}
            if not _match(pattern, node, names, binding):
                continue
            for name in names - set(binding):
                binding[name] = self._leaf()
            new = _substitute(result, binding)
            sides = [eq.lhs, eq.rhs]
            sides[side] = tree.replace(path, new)
            return Equation(sides[0], sides[1])
        return None

    # -- false candidates by mutation ------------------------------------------------------------------------------
    def mutate(self, eq: Equation) -> Equation | None:
        """A random local change of ``eq`` (shrink, replace, grow one side, or grow both sides)."""
        op = self._choice(("shrink", "replace", "replace", "grow", "grow_sides"))
        if op == "grow_sides":
            name, leaf = self._choice(_BINARY), self._leaf()
            return Equation(Tree(name, [eq.lhs, leaf]), Tree(name, [eq.rhs, leaf.copy()]))
        side = int(self.rng.integers(2))
        tree = (eq.lhs, eq.rhs)[side]
        nodes = list(tree.subtrees())
        path, node = nodes[int(self.rng.integers(len(nodes)))]
        if op == "shrink":
            if not node.children:
                return None
            new = self._choice(node.children)
        elif op == "replace":
            if node.children:
                same = [f for f, k in FUNCTIONS.items() if k == len(node.children) and f != node.label]
                new = Tree(self._choice(same), node.children)
            else:
                choices = [v for v in (*self.variables, *self.integers, "pi") if v != node.label]
                new = Tree(self._choice(choices))
        else:
            if self.rng.random() < 0.5:
                new = Tree(self._choice(_UNARY), [node])
            else:
                pair = [node, self._leaf()]
                if self.rng.random() < 0.5:
                    pair.reverse()
                new = Tree(self._choice(_BINARY), pair)
        sides = [eq.lhs, eq.rhs]
        sides[side] = tree.replace(path, new)
        return Equation(sides[0], sides[1])

    # -- function evaluations --------------------------------------------------------------------------------------
    def function_evaluation(self, true: bool) -> Equation | None:
        """``f(a) = v`` with ``a`` in [-3, 3] rounded to ``arg_decimals`` and ``v`` rounded to ``decimals``."""
        name = self._choice(_EVAL_FUNCTIONS)
        arg = round(float(self.rng.uniform(-3.0, 3.0)), self.arg_decimals)
        lhs = Tree(name, [Tree(_fmt(arg))])
        value_arr, _ = evaluate(lhs, {})
        value = float(value_arr[0])
        if not math.isfinite(value) or abs(value) >= 100:
            self.report["function_domain_skipped"] += 1
            return None
        rounded = round(value, self.decimals)
        if not true:
            delta = 0.0
            while abs(delta) < 10**-self.decimals:
                delta = round(float(self.rng.normal(0, max(0.5, abs(value) / 2))), self.decimals)
            rounded = round(rounded + delta, self.decimals)
            if abs(rounded) >= 100:
                return None
        return Equation(lhs, Tree(_fmt(rounded)), label=true, kind="function")

    # -- the loop --------------------------------------------------------------------------------------------------
    def generate(
        self, per_depth: int | Mapping[int, int] = 100, functions: int = 0, max_tries: int = 200_000
    ) -> list[Equation]:
        """Generate balanced (half true) symbolic equations per depth ``1..max_depth`` and ``functions`` function
        evaluations (half true). Stops early after ``max_tries`` candidates, recording the shortfall in
        :attr:`report` (``short_depth_<d>``).
        """
        want = {d: per_depth for d in range(1, self.max_depth + 1)} if isinstance(per_depth, int) else dict(per_depth)
        true_bucket: dict[int, list[Equation]] = {d: [] for d in want}
        false_bucket: dict[int, list[Equation]] = {d: [] for d in want}
        need_true = {d: n - n // 2 for d, n in want.items()}
        need_false = {d: n // 2 for d, n in want.items()}
        seen: set[str] = set()
        pool: dict[int, list[Equation]] = {}  # known true identities by depth
        for ax in self.axioms:
            seen.add(ax.key())
            pool.setdefault(ax.depth, []).append(ax)
            if ax.depth in true_bucket and len(true_bucket[ax.depth]) < need_true[ax.depth]:
                true_bucket[ax.depth].append(ax)
                self.report["axiom"] += 1

        def done() -> bool:
            return all(len(true_bucket[d]) >= need_true[d] and len(false_bucket[d]) >= need_false[d] for d in want)

        tries = 0
        while not done() and tries < max_tries:
            tries += 1
            # aim at a bucket that is still short: start from an identity of that depth or one less
            open_depths = [
                d for d in want if len(true_bucket[d]) < need_true[d] or len(false_bucket[d]) < need_false[d]
            ]
            target = self._choice(open_depths)
            near = [pool[d] for d in (target - 1, target) if d in pool]
            if not any(near):
                near = [items for d, items in pool.items() if d <= target]
            base = self._choice_among(near)
            mutating = self.rng.random() < 0.5
            cand = self.mutate(base) if mutating else self.rewrite(base)
            if cand is None:
                self.report["no_candidate"] += 1
                continue
            if cand.depth > self.max_depth or cand.depth < 1:
                self.report["depth_skipped"] += 1
                continue
            key = cand.key()
            if key in seen:
                self.report["duplicate"] += 1
                continue
            verdict = self._check(cand.lhs, cand.rhs)
            if verdict is None:
                self.report["domain_skipped"] += 1
                continue
            if not mutating and not verdict:
                self.report["rewrite_failed_check"] += 1
                continue
            seen.add(key)
            cand.label = bool(verdict)
            d = cand.depth
            if verdict:
                pool.setdefault(d, []).append(cand)
                if mutating:
                    self.report["mutation_true"] += 1
                if d in true_bucket and len(true_bucket[d]) < need_true[d]:
                    true_bucket[d].append(cand)
            elif d in false_bucket and len(false_bucket[d]) < need_false[d]:
                false_bucket[d].append(cand)
            filled = f"filled_depth_{d}_at_try"  # how the cost grows with the size asked
            full = d in want and len(true_bucket[d]) >= need_true[d] and len(false_bucket[d]) >= need_false[d]
            if full and filled not in self.report:
                self.report[filled] = tries
        for d in want:
            short = need_true[d] + need_false[d] - len(true_bucket[d]) - len(false_bucket[d])
            if short:
                self.report[f"short_depth_{d}"] = short
        self.report["tries"] += tries
        out = [eq for d in sorted(want) for eq in true_bucket[d] + false_bucket[d]]
        self.report["symbolic_true"] += sum(e.label for e in out)
        self.report["symbolic_false"] += sum(not e.label for e in out)
        n_true = functions - functions // 2
        made = {True: 0, False: 0}
        tries = 0
        while (made[True] < n_true or made[False] < functions // 2) and tries < 20 * functions + 100:
            tries += 1
            label = made[True] < n_true if made[False] >= functions // 2 else bool(self.rng.random() < 0.5)
            if made[label] >= (n_true if label else functions // 2):
                continue
            eq = self.function_evaluation(label)
            if eq is None:
                continue
            key = eq.key()
            if key in seen:
                self.report["duplicate"] += 1
                continue
            seen.add(key)
            made[label] += 1
            out.append(eq)
        self.report["function_true"] += made[True]
        self.report["function_false"] += made[False]
        order = self.rng.permutation(len(out))
        return [out[int(i)] for i in order]


def variables_of(eq: Equation) -> list[str]:
    """The variables of both sides, in order of first appearance."""
    return variables(Tree("eq", [eq.lhs, eq.rhs]))


def _substitute(tree: Tree, binding: Mapping[str, Tree]) -> Tree:
    """A copy with every leaf named in ``binding`` replaced by (a copy of) its subtree."""

    def leaf(node: Tree) -> Tree:
        bound = binding.get(node.label)
        return bound.copy() if bound is not None else Tree(node.label)

    return tree.map_leaves(leaf)


def _fmt(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# -- JSONL ------------------------------------------------------------------------------------------------------
JSONL_FIELDS = ("lhs", "rhs", "label", "kind", "depth", "text")


def write_jsonl(equations: Iterable[Equation], path: str | Path) -> Path:
    """Write one JSON object per line: ``{"lhs", "rhs"`` (s-expressions), ``"label"`` (bool), ``"kind"``
    (``"symbolic"``/``"function"``), ``"depth"`` (int), ``"text"`` (sympy infix, informative only)``}``.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_jsonl([parse_equation("x + 0 = x")], pathlib.Path(tempfile.mkdtemp()) / "eq.jsonl")
        >>> p.read_text().strip()
        '{"lhs": "(add x 0)", "rhs": "x", "label": true, "kind": "symbolic", "depth": 1, "text": "x + 0 = x"}'
    """
    import json

    from trinity_lightning.data.atomic import atomic_write_text

    lines = [
        json.dumps(
            {
                "lhs": eq.lhs.sexpr(),
                "rhs": eq.rhs.sexpr(),
                "label": bool(eq.label),
                "kind": eq.kind,
                "depth": eq.depth,
                "text": eq.text(),
            }
        )
        for eq in equations
    ]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def read_jsonl(path: str | Path) -> list[Equation]:
    """Read equations written by :func:`write_jsonl` (``"text"`` is ignored; ``"lhs"``/``"rhs"`` may also be
    infix text when ``"format": "infix"``). Blank lines are skipped.

    Raises:
        DataFormatError: naming the file, the 1-based line and the field (bad JSON, a missing field, a malformed
            expression, an unknown function symbol, an arity mismatch, a label that is not a boolean, a depth that
            disagrees with the trees).
    """
    import json

    from trinity_lightning.data.errors import text_lines
    from trinity_lightning.equations.grammar import parse_expression

    out: list[Equation] = []
    for number, line in text_lines(path, field_names=["record"]):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(
                f"not valid JSON ({err.msg} at column {err.colno})", source=path, line=number
            ) from None
        if not isinstance(record, dict):
            raise DataFormatError(f"expected a JSON object, got {type(record).__name__}", source=path, line=number)
        sides = []
        for name in ("lhs", "rhs"):
            if name not in record:
                raise DataFormatError("missing field", source=path, line=number, field=name)
            text = record[name]
            if not isinstance(text, str):
                raise DataFormatError(f"expected a string, got {text!r}", source=path, line=number, field=name)
            try:
                tree = parse_expression(text) if record.get("format") == "infix" else Tree.from_sexpr(text)
                validate_expression(tree)
            except TreeError as err:
                raise DataFormatError(str(err), source=path, line=number, field=name) from None
            sides.append(tree)
        label = record.get("label", True)
        if label not in (True, False, 0, 1) or isinstance(label, float):
            raise DataFormatError(
                f"expected true/false (or 1/0), got {label!r}", source=path, line=number, field="label"
            )
        kind = record.get("kind", "symbolic")
        if kind not in ("symbolic", "function"):
            raise DataFormatError(
                f"expected 'symbolic' or 'function', got {kind!r}", source=path, line=number, field="kind"
            )
        eq = Equation(sides[0], sides[1], bool(label), kind)
        if "depth" in record and record["depth"] != eq.depth:
            raise DataFormatError(
                f"depth {record['depth']!r} disagrees with the trees (depth {eq.depth})",
                source=path,
                line=number,
                field="depth",
            )
        out.append(eq)
    return out


def is_numeric_leaf(label: str) -> bool:
    """Whether a leaf label is a number (re-exported for callers that expand decimals)."""
    return is_number(label)


# -- a split where the numeric check is weak ---------------------------------------------------------------------
def domain_fraction(eq: Equation, rng: np.random.Generator, points: int = 512, max_scale: float = 1e6) -> float:
    """Fraction of random points (uniform in ``[-3, 3]`` per variable, as :func:`~.grammar.numeric_check`) where
    both sides and every intermediate value are finite and below ``max_scale``.

    Example:
        >>> import numpy as np
        >>> round(domain_fraction(parse_equation("log(x*y) = log(x) + log(y)"), np.random.default_rng(0)), 2)
        0.27
    """
    names = variables_of(eq) or ["_"]
    env = {name: rng.uniform(-3.0, 3.0, size=points) for name in names}
    left, s_left = evaluate(eq.lhs, env)
    right, s_right = evaluate(eq.rhs, env)
    valid = np.isfinite(left) & np.isfinite(right) & (np.maximum(s_left, s_right) < max_scale)
    return float(valid.mean())


def restricted_domain_equations(
    per_depth: int | Mapping[int, int] = 100,
    seed: int = 0,
    max_depth: int = 4,
    max_domain_fraction: float = 0.5,
    points: int = 64,
    exclude: Iterable[str] = (),
    oversample: int = 4,
) -> tuple[list[Equation], Counter[str]]:
    """A restricted-domain split: symbolic equations of depths 2..``max_depth`` (no identity of depth 1 has a
    restricted domain in this grammar), half true per depth, whose both sides are defined on at most
    ``max_domain_fraction`` of ``[-3, 3]^k`` (the split where a numeric check with few random points is weak).

    Recipe: an :class:`EquationGenerator` seeded with :data:`RESTRICTED_AXIOMS` plus the algebra part of
    :data:`AXIOMS` (rewriting rules for the arguments) and labelling
    with ``points`` random points (64, against the 8 of the usual check, so that an equation defined on a few
    percent of the box still gets a label: ``domain_skipped`` counts the rest) generates ``oversample`` times
    ``per_depth`` equations per depth; equations with a :func:`domain_fraction` (512 points) above
    ``max_domain_fraction`` and equations whose :meth:`~.grammar.Equation.key` is in ``exclude`` (a training set)
    are dropped; the rest are balanced per depth (as many false as true, at most ``per_depth``). The report counts
    every step (``too_wide_domain``, ``excluded``, ``short_depth_<d>`` ...).

    Example:
        >>> eqs, report = restricted_domain_equations(per_depth=6, max_depth=3)
        >>> len(eqs), sum(e.label for e in eqs), sorted({e.depth for e in eqs})
        (12, 6, [2, 3])
    """
    want = {d: per_depth for d in range(2, max_depth + 1)} if isinstance(per_depth, int) else dict(per_depth)
    algebra = [a for a in AXIOMS if not any(f in a for f in ("sin", "cos", "tan", "cot", "sec", "csc", "pi"))]
    gen = EquationGenerator(seed=seed, max_depth=max(want), points=points, axioms=(*RESTRICTED_AXIOMS, *algebra))
    pool = gen.generate(per_depth={d: oversample * n for d, n in want.items()})
    report: Counter[str] = Counter({f"generator_{k}": v for k, v in gen.report.items()})
    excluded = set(exclude)
    probe = np.random.default_rng(seed + 7919)
    buckets: dict[tuple[int, bool], list[Equation]] = {}
    for eq in pool:
        if eq.key() in excluded:
            report["excluded"] += 1
        elif domain_fraction(eq, probe) > max_domain_fraction:
            report["too_wide_domain"] += 1
        else:
            buckets.setdefault((eq.depth, bool(eq.label)), []).append(eq)
    out: list[Equation] = []
    for d, n in want.items():
        true, false = buckets.get((d, True), []), buckets.get((d, False), [])
        k = min(len(true), len(false), n // 2)
        if 2 * k < n:
            report[f"short_depth_{d}"] = n - 2 * k
        out += true[:k] + false[:k]
    report["restricted_kept"] = len(out)
    return out, report
