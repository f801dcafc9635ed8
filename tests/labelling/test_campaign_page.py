"""A real ActiveLearning campaign with a person on the labelling page: it stops waiting, the page answers, the
campaign resumes from exactly those answers and the open page notices the next round's queries."""

from __future__ import annotations

import json

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.active._helpers import datamodule, mlp
from tests.labelling.conftest import Server
from tests.labelling.test_browser import _item, _keys, _sign_in, _wait
from trinity_lightning.active import ActiveLearning, FileOracle


def _run(tmp_path, ckpt_path=None):
    dm = datamodule(tmp_path, initial_labelled=12)
    oracle = FileOracle(str(tmp_path / "queries"), wait=False, choices=["a", "b", "c"])
    al = ActiveLearning("least_confidence", query_size=4, budget=20, oracle=oracle)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(
        max_epochs=-1, callbacks=[al, ckpt], logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, deterministic=True,
    )  # fmt: skip
    trainer.fit(mlp(), datamodule=dm, ckpt_path=ckpt_path)
    return dm, al, oracle


def test_campaign_resumes_from_the_page_answers_and_the_page_shows_the_next_round(tmp_path, serve_dir, browser):
    from selenium.webdriver.common.by import By

    dm, al, oracle = _run(tmp_path)
    assert al.waiting and dm.n_labelled == 12
    queried = oracle.pending_indices(1)
    server = Server(tmp_path / "queries").start()
    serve_dir.append(server)
    _sign_in(browser, server.url, "ann")
    given = {}
    for n, index in enumerate(queried):
        _wait(browser, lambda d, i=index: _item(d) == str(i))
        _keys(browser, str(1 + n % 3))
        given[index] = n % 3
    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())

    dm, al, oracle = _run(tmp_path, ckpt_path="last")  # resumes from the checkpoint, reads the page's answers
    assert dm.n_labelled == 16 and al.waiting
    assert {i: dm.annotations[i] for i in queried} == given
    assert json.loads((tmp_path / "labels.json").read_text())["labels"][str(queried[0])] == given[queried[0]]
    second = oracle.pending_indices(2)
    assert len(second) == 4
    _wait(browser, lambda d: d.execute_script("return window.trinity.round") == 2, timeout=15)  # noticed
    assert _item(browser) == str(second[0])
