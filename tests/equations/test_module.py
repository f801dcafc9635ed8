"""EquationVerifier, EquationDataModule and recipes/equations.yaml."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from trinity_lightning.equations.datamodule import EquationDataModule
from trinity_lightning.equations.generator import EquationGenerator, write_jsonl
from trinity_lightning.equations.grammar import parse_equation, parse_expression
from trinity_lightning.equations.module import EquationVerifier

ROOT = Path(__file__).resolve().parents[2]


def _trainer(tmp_path, **kw):
    kw = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(tmp_path),
        **kw,
    }
    return pl.Trainer(**kw)


def test_datamodule_splits_by_depth_and_at_random():
    dm = EquationDataModule(per_depth=20, functions=10, max_depth=3, train_depths=[1, 2], test_depths=[3])
    dm.setup("fit")
    assert {e.depth for e in dm.test} == {3} and {e.kind for e in dm.test} == {"symbolic"}
    assert {e.depth for e in dm.train + dm.val if e.kind == "symbolic"} == {1, 2}
    assert sum(e.kind == "function" for e in dm.train + dm.val) == 10
    same = EquationDataModule(per_depth=20, functions=0, max_depth=2, split="random", train_depths=[1, 2])
    same.setup("fit")
    assert len(same.test) == 8 and {e.depth for e in same.test} <= {1, 2}
    keys = [e.key() for e in same.train + same.val + same.test]
    assert len(set(keys)) == len(keys)  # no equation (up to renaming) in two splits
    assert dm.report["symbolic_true"] == 30


def test_datamodule_reads_jsonl(tmp_path):
    path = write_jsonl(EquationGenerator(seed=1, max_depth=2).generate(per_depth=10), tmp_path / "eq.jsonl")
    dm = EquationDataModule(path=str(path), train_depths=[1], test_depths=[2], val_fraction=0.0)
    dm.setup("fit")
    assert len(dm.train) == 10 and len(dm.test) == 10
    with pytest.raises(ValueError, match="no training equations of depths"):
        EquationDataModule(path=str(path), train_depths=[5], test_depths=[2]).setup("fit")


@pytest.mark.parametrize(
    "encoder",
    ["treelstm", pytest.param("treenn", marks=pytest.mark.slow), pytest.param("bilstm", marks=pytest.mark.slow)],
)
def test_verifier_learns_a_tiny_set(tmp_path, encoder):
    pl.seed_everything(0)
    dm = EquationDataModule(
        per_depth=40, functions=40, max_depth=2, train_depths=[1, 2], test_depths=[2], batch_size=16
    )
    model = EquationVerifier(encoder=encoder, hidden_size=16, lr=0.01)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(model, dm)
    probs = model.predict_proba(dm.train)
    labels = torch.tensor([float(e.label) for e in dm.train])
    assert ((probs > 0.5).float() == labels).float().mean() > 0.6


def test_value_head_and_decimal_trees():
    model = EquationVerifier(hidden_size=8)
    batch = model.collate([parse_equation("sin(2.5) = 0.6", kind="function"), parse_equation("x*1 = x")])
    assert batch.values[0] == pytest.approx(0.6) and batch.values[1].isnan()
    names = {i: label for label, i in model.vocab.items()}
    assert {"10^-1", "6"} <= {names[i] for i in batch.trees.labels.tolist()}  # 0.6 = 6 * 10^-1, a decimal tree
    assert model.predict_value([parse_expression("sin(2.5)")]).shape == (1,)
    with pytest.raises(ValueError, match="outside the encoder's range"):
        model.collate([parse_equation("x = 12345")])


def test_own_number_symbols_give_decimal_trees_their_own_cells():
    shared = EquationVerifier(hidden_size=8)
    own = EquationVerifier(hidden_size=8, own_number_symbols=True)
    eqs = [parse_equation("sin(2.5) = 0.6", kind="function"), parse_equation("x*1 + 2 = x + 2")]
    names = {i: label for label, i in own.vocab.items()}
    labels = [names[i] for i in own.collate(eqs).trees.labels.tolist()]
    assert {"num_add", "num_mul", "#6", "#2", "add", "mul", "2"} <= set(labels)
    cell = own.cell_of
    assert len({int(cell[own.vocab[s]]) for s in ("num_add", "num_mul", "add", "mul")}) == 4
    assert own.tree is not None and shared.tree is not None
    assert own.tree.node_types == shared.tree.node_types + 2
    # the algebra's add/mul cells see no number: with shared symbols the decimal tree of 2.5 uses "add"
    shared_names = {i: label for label, i in shared.vocab.items()}
    assert "add" in [shared_names[i] for i in shared.collate(eqs[:1]).trees.labels.tolist()]
    assert "add" not in [names[i] for i in own.collate(eqs[:1]).trees.labels.tolist()]
    assert own.predict_proba(eqs).shape == (2,)


def test_unknown_variable_names_the_side():
    model = EquationVerifier(hidden_size=8)
    with pytest.raises(ValueError, match="equation side 0: unknown label 'w'"):
        model.collate([parse_equation("w = w")])


def test_recipe_runs_through_the_cli_at_tiny_size(tmp_path):
    from trinity_lightning.cli import run_lightning

    recipe = yaml.safe_load((ROOT / "recipes" / "equations.yaml").read_text())
    recipe["trainer"].update(
        max_epochs=1, limit_train_batches=2, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    recipe["model"]["init_args"]["hidden_size"] = 8
    recipe["data"]["init_args"].update(per_depth=8, functions=8)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cli = run_lightning(["fit", "--config", str(config)])
    assert isinstance(cli.model, EquationVerifier)
    assert "val_acc" in cli.trainer.callback_metrics
    assert cli.model.hparams["comparator"] == "dot" and cli.model.compare is None  # the claims' comparator


def test_value_leaf_numbers_are_single_leaves_embedded_by_their_value():
    """``number_encoding="value_leaf"`` (the official code's): a number outside -9..9 is one ``<num>`` leaf whose
    embedding is the value network's output for its value; small integers keep their symbol; no range limit."""
    from trinity_lightning.equations.module import NUMBER_LEAF, number_features

    torch.manual_seed(0)
    model = EquationVerifier(hidden_size=8, number_encoding="value_leaf")
    eqs = [parse_equation("sin(2.5) = 0.6", kind="function"), parse_equation("x + 2 = 12345.5")]
    batch = model.collate(eqs)
    names = {i: label for label, i in model.vocab.base.items()}  # type: ignore[attr-defined]
    labels = [names[i] for i in batch.trees.labels.tolist()]
    assert labels.count(NUMBER_LEAF) == 3 and "2" in labels and "10^-1" not in labels  # no decimal tree
    assert batch.trees.num_nodes == 2 + 1 + 3 + 1  # sin(2.5), 0.6, x + 2, 12345.5
    num = batch.trees.labels == model.vocab[NUMBER_LEAF]
    assert sorted(batch.trees.values[num].tolist()) == pytest.approx([0.6, 2.5, 12345.5])
    x = model.embed_labels(batch.trees.labels, batch.trees.values)
    assert model.number_net is not None
    expected = model.number_net(number_features(batch.trees.values[num]))
    assert torch.allclose(x[num], expected)
    assert torch.equal(x[~num], model.embed(batch.trees.labels[~num]))  # symbols: their embeddings
    # the verdict depends on the value: same shape, other number, other encoding
    other = model.collate([parse_equation("sin(2.5) = 0.7", kind="function")])
    assert not torch.allclose(model.encode(batch)[2], model.encode(other)[1])  # the right sides differ
    logits, _ = model(batch)
    logits.sum().backward()
    assert model.number_net[0].weight.grad is not None and model.number_net[0].weight.grad.abs().sum() > 0


def test_value_leaf_works_for_the_sequence_baseline_and_rejects_bad_settings():
    model = EquationVerifier(encoder="bilstm", hidden_size=8, number_encoding="value_leaf")
    batch = model.collate([parse_equation("cos(150.25) = -0.6", kind="function")])
    assert batch.token_values is not None
    assert batch.token_values[0, 1].item() == pytest.approx(150.25) and batch.token_values[0, 0].isnan()
    assert model.predict_proba([parse_equation("cos(150.25) = -0.6", kind="function")]).shape == (1,)
    with pytest.raises(ValueError, match="number_encoding='tree'; expected 'decimal_tree' or 'value_leaf'"):
        EquationVerifier(number_encoding="tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="own_number_symbols applies to decimal trees"):
        EquationVerifier(number_encoding="value_leaf", own_number_symbols=True)
    with pytest.raises(ValueError, match="unknown label 'w'"):
        model.collate([parse_equation("w = 2.5")])  # only numbers fall back to <num>


def test_number_leaf_vocabulary():
    from trinity_lightning.equations.module import NumberLeafVocabulary

    voc = NumberLeafVocabulary({"<pad>": 0, "2": 1, "<num>": 2})
    assert (voc["2"], voc["2.5"], voc["-13"], len(voc), list(voc)) == (1, 2, 2, 3, ["<pad>", "2", "<num>"])
    assert "pi" not in voc and 3 not in voc
    with pytest.raises(KeyError):
        voc["pi"]
    with pytest.raises(ValueError, match="'<num>' is not in the base vocabulary"):
        NumberLeafVocabulary({"x": 0})


@pytest.mark.slow
def test_verifier_with_value_leaves_learns_function_values(tmp_path):
    """Function evaluations only (``f(a) = b``, half false): the value network must read the numbers to fit them."""
    pl.seed_everything(0)
    dm = EquationDataModule(per_depth=0, functions=120, max_depth=1, train_depths=[1], test_depths=[1], batch_size=16)
    dm.setup("fit")
    model = EquationVerifier(hidden_size=16, lr=0.01, number_encoding="value_leaf", value_weight=0.0)
    _trainer(tmp_path, max_epochs=12).fit(model, dm)
    train = [e for e in dm.train if e.kind == "function"]
    probs = model.predict_proba(train)
    labels = torch.tensor([float(e.label) for e in train])
    assert ((probs > 0.5).float() == labels).float().mean() > 0.7


def test_dot_comparator_is_the_official_equality_node_and_learns(tmp_path):
    model = EquationVerifier(hidden_size=8, comparator="dot")
    assert model.compare is None and model.dot_bias is not None
    with torch.no_grad():
        model.dot_bias.fill_(-0.25)
    batch = model.collate([parse_equation("x*1 = x"), parse_equation("sin(x) = cos(x)")])
    sides = model.encode(batch)
    logits, _ = model(batch)
    assert torch.allclose(logits, (sides[:2] * sides[2:]).sum(dim=1) - 0.25)
    # the only comparator parameter is the bias: the mlp's weights are absent from the state dict
    assert not any(k.startswith("compare.") for k in model.state_dict()) and "dot_bias" in model.state_dict()
    assert "compare.0.weight" in EquationVerifier(hidden_size=8).state_dict()  # the default is unchanged
    with pytest.raises(ValueError, match="comparator='cosine'"):
        EquationVerifier(comparator="cosine")  # type: ignore[arg-type]
    pl.seed_everything(0)
    dm = EquationDataModule(
        per_depth=40, functions=40, max_depth=2, train_depths=[1, 2], test_depths=[2], batch_size=16
    )
    learner = EquationVerifier(hidden_size=16, lr=0.01, comparator="dot")
    _trainer(tmp_path, max_epochs=3).fit(learner, dm)
    probs = learner.predict_proba(dm.train)
    labels = torch.tensor([float(e.label) for e in dm.train])
    assert ((probs > 0.5).float() == labels).float().mean() > 0.6
