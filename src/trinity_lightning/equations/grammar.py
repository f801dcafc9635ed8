"""The equation grammar: function symbols, leaves, equations, sympy parsing/printing and the numeric check.

An equation is two expression :class:`~.trees.Tree` s (``lhs = rhs``). Internal nodes are function symbols of
fixed arity (:data:`FUNCTIONS`); leaves are variables (identifiers), numbers (``"2"``, ``"-1"``, ``"2.5"``) or
``"pi"``. :func:`numeric_check` evaluates both sides with numpy at random points: points where a side is not
finite (a pole, a branch cut, ``log`` of a negative number) are dropped, and too few valid points is a *domain*
verdict (``None``), never a label.

Example:
    >>> eq = parse_equation("sin(x)**2 + cos(x)**2 = 1")
    >>> eq.lhs.sexpr(), eq.depth
    ('(add (pow (sin x) 2) (pow (cos x) 2))', 3)
    >>> import numpy as np
    >>> numeric_check(eq.lhs, eq.rhs, np.random.default_rng(0))
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from trinity_lightning.equations.trees import Tree, TreeError

__all__ = [
    "FUNCTIONS",
    "Equation",
    "evaluate",
    "from_sympy",
    "is_number",
    "numeric_check",
    "parse_equation",
    "parse_expression",
    "to_sympy",
    "validate_expression",
]

# symbol -> (arity, numpy function)
_NP: dict[str, tuple[int, Callable[..., Any]]] = {
    "add": (2, np.add),
    "mul": (2, np.multiply),
    "pow": (2, np.power),
    "sin": (1, np.sin),
    "cos": (1, np.cos),
    "tan": (1, np.tan),
    "csc": (1, lambda a: 1.0 / np.sin(a)),
    "sec": (1, lambda a: 1.0 / np.cos(a)),
    "cot": (1, lambda a: np.cos(a) / np.sin(a)),
    "exp": (1, np.exp),
    "log": (1, np.log),
}
FUNCTIONS: dict[str, int] = {name: arity for name, (arity, _) in _NP.items()}
"""Function symbol -> arity."""

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
Kind = Literal["symbolic", "function"]


def is_number(label: str) -> bool:
    """``"2"``, ``"-1"``, ``"2.5"`` (not ``"pi"``)."""
    return bool(_NUMBER.match(label))


def validate_expression(tree: Tree) -> None:
    """Raise :class:`~.trees.TreeError` for an unknown function symbol, a wrong arity or a bad leaf.

    Example:
        >>> validate_expression(Tree.from_sexpr("(foo x)"))
        Traceback (most recent call last):
        ...
        trinity_lightning.equations.trees.TreeError: unknown function symbol 'foo' in (foo x); known: add, cos, ...
    """
    for node in tree.nodes():
        if node.children:
            if node.label not in FUNCTIONS:
                raise TreeError(
                    f"unknown function symbol {node.label!r} in {node.sexpr()}; known: {', '.join(sorted(FUNCTIONS))}"
                )
            if FUNCTIONS[node.label] != len(node.children):
                raise TreeError(
                    f"arity mismatch: {node.label!r} takes {FUNCTIONS[node.label]} argument(s), got "
                    f"{len(node.children)} in {node.sexpr()}"
                )
        elif node.label in FUNCTIONS:
            raise TreeError(f"arity mismatch: function symbol {node.label!r} used as a leaf (no arguments)")
        elif not (is_number(node.label) or _IDENT.match(node.label)):
            raise TreeError(f"bad leaf {node.label!r}: expected a number, a variable name or 'pi'")


def variables(tree: Tree) -> list[str]:
    """The variable names of an expression, in order of first appearance."""
    out: list[str] = []
    for _, node in tree.subtrees():
        if not node.children and node.label != "pi" and not is_number(node.label) and node.label not in out:
            out.append(node.label)
    return out


def rename_variables(tree: Tree) -> Tree:
    """A copy whose variables are renamed ``_v0, _v1, ...`` in order of first appearance."""
    names = {v: f"_v{i}" for i, v in enumerate(variables(tree))}

    def leaf(node: Tree) -> Tree:
        return Tree(names.get(node.label, node.label))

    return tree.map_leaves(leaf)


@dataclass
class Equation:
    """``lhs = rhs`` with its truth label.

    Attributes:
        lhs, rhs: the two sides.
        label: whether the equation holds (for every value of its variables where both sides are defined).
        kind: ``"symbolic"`` (an identity with variables) or ``"function"`` (a function evaluation such as
            ``sin(2.5) = 0.6``, the value rounded).
        depth: the larger height of the two sides (a leaf has height 0), before any decimal-tree expansion.
    """

    lhs: Tree
    rhs: Tree
    label: bool = True
    kind: Kind = "symbolic"
    depth: int = field(init=False)

    def __post_init__(self) -> None:
        self.depth = max(self.lhs.height(), self.rhs.height())

    def text(self) -> str:
        """Human-readable form, printed by sympy."""
        return f"{to_sympy(self.lhs, evaluate=False)} = {to_sympy(self.rhs, evaluate=False)}"

    def key(self) -> str:
        """A key equal for equations equal up to renaming variables and swapping sides (for deduplication)."""
        out = []
        for a, b in ((self.lhs, self.rhs), (self.rhs, self.lhs)):
            out.append(rename_variables(Tree("eq", [a, b])).sexpr())
        return min(out)


# -- sympy ------------------------------------------------------------------------------------------------------
def from_sympy(expr: Any) -> Tree:
    """A sympy expression as a binary expression tree (``Add``/``Mul`` folded left, ``p/q`` as ``p * q**-1``).

    Raises :class:`~.trees.TreeError` for an unknown function symbol or an unsupported construct.
    """
    import sympy

    if expr is sympy.pi:
        return Tree("pi")
    if isinstance(expr, sympy.Symbol):
        return Tree(expr.name)
    if isinstance(expr, sympy.Integer):
        return Tree(str(int(expr)))
    if isinstance(expr, sympy.Rational):
        return Tree("mul", [Tree(str(expr.p)), Tree("pow", [Tree(str(expr.q)), Tree("-1")])])
    if isinstance(expr, sympy.Float):
        return Tree(repr(float(expr)))
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        name = "add" if isinstance(expr, sympy.Add) else "mul"
        args = [from_sympy(a) for a in expr.args]
        tree = args[0]
        for arg in args[1:]:
            tree = Tree(name, [tree, arg])
        return tree
    if isinstance(expr, sympy.Pow):
        return Tree("pow", [from_sympy(expr.base), from_sympy(expr.exp)])
    if isinstance(expr, sympy.Function) or (hasattr(expr, "func") and isinstance(expr.func, sympy.FunctionClass)):
        name = getattr(expr.func, "__name__", str(expr.func)).lower()
        if name not in FUNCTIONS:
            raise TreeError(f"unknown function symbol {name!r}; known: {', '.join(sorted(FUNCTIONS))}")
        if FUNCTIONS[name] != len(expr.args):
            raise TreeError(f"arity mismatch: {name!r} takes {FUNCTIONS[name]} argument(s), got {len(expr.args)}")
        return Tree(name, [from_sympy(a) for a in expr.args])
    if expr is sympy.E:
        return Tree("exp", [Tree("1")])
    raise TreeError(f"unsupported expression {expr!r} ({type(expr).__name__})")


def parse_expression(text: str) -> Tree:
    """Parse infix text (sympy syntax: ``sin(x)**2 + 1/x``) into a tree; a syntax error raises
    :class:`~.trees.TreeError` with the reason.

    Example:
        >>> parse_expression("2*x - 1").sexpr()
        '(add (mul 2 x) (mul -1 1))'
    """
    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    local = {name: getattr(sympy, name) for name in FUNCTIONS if hasattr(sympy, name) and name not in ("add", "mul")}
    local.update({"pi": sympy.pi})
    try:
        expr = parse_expr(text, local_dict=local, evaluate=False)
    except (SyntaxError, TypeError, ValueError, sympy.SympifyError, TokenError) as err:
        raise TreeError(f"malformed expression {text!r}: {type(err).__name__}: {err}") from None
    except Exception as err:  # sympy's tokenizer raises assorted errors on garbage
        raise TreeError(f"malformed expression {text!r}: {type(err).__name__}: {err}") from None
    return from_sympy(expr)


try:  # the tokenizer's error type
    from tokenize import TokenError
except ImportError:  # pragma: no cover
    TokenError = SyntaxError  # type: ignore[misc,assignment]


def parse_equation(text: str, label: bool = True, kind: Kind = "symbolic") -> Equation:
    """Parse ``"lhs = rhs"`` (sympy syntax on each side).

    Example:
        >>> parse_equation("tan(x) = sin(x)/cos(x)").rhs.sexpr()
        '(mul (sin x) (pow (cos x) -1))'
    """
    if text.count("=") != 1:
        raise TreeError(f"malformed equation {text!r}: expected exactly one '='")
    left, right = text.split("=")
    return Equation(parse_expression(left), parse_expression(right), label, kind)


def to_sympy(tree: Tree, evaluate: bool = True) -> Any:
    """The tree as a sympy expression (``evaluate=False`` keeps its shape, for printing)."""
    import sympy

    made: dict[int, Any] = {}
    for node in tree.nodes():
        args = [made[id(c)] for c in node.children]
        label = node.label
        if label == "add":
            value = sympy.Add(*args, evaluate=evaluate)
        elif label == "mul":
            value = sympy.Mul(*args, evaluate=evaluate)
        elif label == "pow":
            value = sympy.Pow(*args, evaluate=evaluate)
        elif label in FUNCTIONS:
            value = getattr(sympy, label)(*args, evaluate=evaluate)
        elif label == "pi":
            value = sympy.pi
        elif is_number(label):
            value = sympy.Integer(int(label)) if "." not in label else sympy.Float(label)
        else:
            value = sympy.Symbol(label)
        made[id(node)] = value
    return made[id(tree)]


# -- numeric evaluation -----------------------------------------------------------------------------------------
def evaluate(tree: Tree, env: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Value of the tree at the points of ``env`` (variable -> array) and the largest intermediate magnitude.

    Non-finite values (poles, ``log`` of a negative number) come out as ``nan``/``inf``, never as an exception.
    An unknown variable raises :class:`~.trees.TreeError`.
    """
    shape = next(iter(env.values())).shape if env else (1,)
    values: dict[int, np.ndarray] = {}
    scale = np.zeros(shape)
    with np.errstate(all="ignore"):
        for node in tree.nodes():
            label = node.label
            if node.children:
                fn = _NP[label][1]
                value = np.asarray(fn(*(values[id(c)] for c in node.children)), dtype=np.float64)
            elif label == "pi":
                value = np.full(shape, np.pi)
            elif is_number(label):
                value = np.full(shape, float(label))
            elif label in env:
                value = np.asarray(env[label], dtype=np.float64)
            else:
                raise TreeError(f"evaluate: no value for variable {label!r}")
            value = np.broadcast_to(value, shape)
            values[id(node)] = value
            scale = np.maximum(scale, np.where(np.isfinite(value), np.abs(value), np.inf))
    return values[id(tree)], scale


def numeric_check(
    lhs: Tree,
    rhs: Tree,
    rng: np.random.Generator,
    points: int = 8,
    min_valid: int = 3,
    low: float = -3.0,
    high: float = 3.0,
    rtol: float = 1e-7,
    atol: float = 0.0,
    max_scale: float = 1e6,
) -> bool | None:
    """Evaluate both sides at ``points`` random points; ``True`` if they agree at every valid one.

    A point is valid when both sides and every intermediate value are finite and below ``max_scale`` in
    magnitude (near a pole the floating-point error grows with the magnitude). Two values agree when
    ``|l - r| <= atol + rtol * max(1, scale)``, ``scale`` the point's largest intermediate magnitude.

    Returns:
        ``True``/``False``, or ``None`` when fewer than ``min_valid`` points are valid (a domain error: the
        caller counts it and skips the equation).
    """
    names = sorted(set(variables(lhs)) | set(variables(rhs)))
    env = {name: rng.uniform(low, high, size=points) for name in names}
    if not names:
        env = {}
    left, s_left = evaluate(lhs, env) if env else evaluate(lhs, {"_": np.zeros(points)})
    right, s_right = evaluate(rhs, env) if env else evaluate(rhs, {"_": np.zeros(points)})
    scale = np.maximum(s_left, s_right)
    valid = np.isfinite(left) & np.isfinite(right) & (scale < max_scale)
    if int(valid.sum()) < min_valid:
        return None
    close = np.abs(left[valid] - right[valid]) <= atol + rtol * np.maximum(1.0, scale[valid])
    return bool(close.all())


def leaves_of(trees: Iterable[Tree]) -> set[str]:
    """Every leaf label of the trees."""
    return {node.label for tree in trees for _, node in tree.subtrees() if not node.children}
