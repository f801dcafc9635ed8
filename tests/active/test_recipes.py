"""Smoke tests of recipes/active_*.yaml through the trinity CLI, with tiny settings."""

from pathlib import Path

import pytest
import yaml

from trinity_lightning.cli import run_lightning

from .test_tagger import _toy_sentences, _write_conll

ROOT = Path(__file__).resolve().parents[2]


def _recipe(name, tmp_path, edit):
    recipe = yaml.safe_load((ROOT / "recipes" / name).read_text())
    recipe["trainer"]["default_root_dir"] = str(tmp_path / "run")
    recipe["trainer"]["enable_progress_bar"] = False
    recipe["trainer"]["enable_model_summary"] = False
    recipe["summary"] = False
    al, ckpt = recipe["trainer"]["callbacks"]
    al["init_args"]["curve_path"] = str(tmp_path / "curve.csv")
    ckpt["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    recipe["data"]["init_args"]["labels_path"] = str(tmp_path / "labels.json")
    edit(recipe, al["init_args"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def _fit(path, *extra):
    return run_lightning(["fit", "--config", str(path), *extra])


def test_active_digits_recipe_and_resume(tmp_path):
    def edit(recipe, al):
        al.update(query_size=20, budget=60, epochs_per_round=1, strategy_kwargs={"n_samples": 3})

    path = _recipe("active_digits.yaml", tmp_path, edit)
    cli = _fit(path)
    dm = cli.datamodule
    assert dm.n_labelled == 60 and "test_acc" in cli.trainer.callback_metrics
    rows = (tmp_path / "curve.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[0].startswith("round,")
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    cli = _fit(path, "--ckpt_path", "last")  # a finished campaign resumes as finished
    assert cli.datamodule.labelled_indices == dm.labelled_indices


def test_active_ner_recipe_tiny(tmp_path):
    sents = _toy_sentences(60)
    for name, part in (("train", sents[:40]), ("dev", sents[40:50]), ("test", sents[50:])):
        _write_conll(tmp_path / f"{name}.txt", part)

    def edit(recipe, al):
        al.update(query_size=30, budget=120, epochs_per_round=1, min_steps_per_round=0)
        recipe["data"]["init_args"].update(
            train_path=str(tmp_path / "train.txt"),
            initial_labelled=4,
            val_path=str(tmp_path / "dev.txt"),
            test_path=str(tmp_path / "test.txt"),
        )
        recipe["model"]["init_args"]["net_kwargs"].update(word_channels=[16], hidden=16, word_dim=16)

    cli = _fit(_recipe("active_ner.yaml", tmp_path, edit))
    assert cli.datamodule.labelled_cost >= 120 and "test_f1" in cli.trainer.callback_metrics


@pytest.mark.slow
def test_active_ner_recipe_on_conll2003(tmp_path):
    from tests.conftest import require_dataset

    require_dataset("conll2003")

    def edit(recipe, al):
        al.update(query_size=1000, budget=3000, epochs_per_round=1, min_steps_per_round=0)
        recipe["data"]["init_args"].update(train_limit=1500, eval_limit=200)

    cli = _fit(_recipe("active_ner.yaml", tmp_path, edit))
    assert cli.datamodule.labelled_cost >= 3000 and cli.trainer.callback_metrics["test_f1"] > 0.05
