"""Symbolic + numeric TreeLSTM (Arabshahi, Singh & Anandkumar, ICLR 2018): a batched TreeLSTM for any tree data,
an equation generator with decimal trees, and a LightningModule that verifies equations.

Example:
    >>> from trinity_lightning.equations import Tree, TreeLSTM, collate_trees
    >>> batch = collate_trees([Tree.from_sexpr("(add x (sin y))")], {"add": 0, "sin": 1, "x": 2, "y": 3})
    >>> TreeLSTM(4, 8)(batch, batch.labels.float()[:, None].expand(-1, 4))[0].shape
    torch.Size([4, 8])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_lightning._lazy import lazy_exports

_EXPORTS = {
    "Tree": "trinity_lightning.equations.trees",
    "TreeBatch": "trinity_lightning.equations.trees",
    "TreeError": "trinity_lightning.equations.trees",
    "collate_trees": "trinity_lightning.equations.trees",
    "TreeLSTM": "trinity_lightning.equations.treelstm",
    "Equation": "trinity_lightning.equations.grammar",
    "FUNCTIONS": "trinity_lightning.equations.grammar",
    "numeric_check": "trinity_lightning.equations.grammar",
    "parse_equation": "trinity_lightning.equations.grammar",
    "parse_expression": "trinity_lightning.equations.grammar",
    "to_sympy": "trinity_lightning.equations.grammar",
    "AXIOMS": "trinity_lightning.equations.generator",
    "RESTRICTED_AXIOMS": "trinity_lightning.equations.generator",
    "domain_fraction": "trinity_lightning.equations.generator",
    "restricted_domain_equations": "trinity_lightning.equations.generator",
    "EquationGenerator": "trinity_lightning.equations.generator",
    "read_jsonl": "trinity_lightning.equations.generator",
    "write_jsonl": "trinity_lightning.equations.generator",
    "DecimalTreeEncoder": "trinity_lightning.equations.decimal",
    "EquationBatch": "trinity_lightning.equations.module",
    "EquationVerifier": "trinity_lightning.equations.module",
    "equation_vocabulary": "trinity_lightning.equations.module",
    "EquationDataModule": "trinity_lightning.equations.datamodule",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from trinity_lightning.equations.datamodule import EquationDataModule
    from trinity_lightning.equations.decimal import DecimalTreeEncoder
    from trinity_lightning.equations.generator import (
        AXIOMS,
        RESTRICTED_AXIOMS,
        EquationGenerator,
        domain_fraction,
        read_jsonl,
        restricted_domain_equations,
        write_jsonl,
    )
    from trinity_lightning.equations.grammar import (
        FUNCTIONS,
        Equation,
        numeric_check,
        parse_equation,
        parse_expression,
        to_sympy,
    )
    from trinity_lightning.equations.module import EquationBatch, EquationVerifier, equation_vocabulary
    from trinity_lightning.equations.treelstm import TreeLSTM
    from trinity_lightning.equations.trees import Tree, TreeBatch, TreeError, collate_trees
