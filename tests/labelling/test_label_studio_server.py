"""A real Label Studio server on loopback: a campaign's round is labelled there and the campaign resumes from it.

Slow (Label Studio needs about a minute to start). Uses ``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_TOKEN`` (a running
server with a legacy API token) when set, else starts ``label-studio`` (``LABEL_STUDIO_BIN`` or on the PATH;
``pip install label-studio`` in its own virtual environment) with a fresh data folder; skips when neither exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.active._helpers import datamodule, mlp
from tests.labelling.conftest import free_port
from trinity_lightning.active import ActiveLearning

pytestmark = pytest.mark.slow
TOKEN = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    pytest.importorskip("label_studio_sdk")
    if os.environ.get("LABEL_STUDIO_URL"):
        yield os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_TOKEN"]
        return
    binary = os.environ.get("LABEL_STUDIO_BIN") or shutil.which("label-studio")
    if not binary:
        pytest.skip("label-studio is not installed (pip install label-studio, or set LABEL_STUDIO_BIN)")
    port, data = free_port(), tmp_path_factory.mktemp("label-studio")
    cmd = [binary, "start", "--no-browser", "--data-dir", str(data), "--port", str(port), "--internal-host",
           "127.0.0.1", "--username", "a@example.org", "--password", "secretpass123", "--user-token", TOKEN,
           "--enable-legacy-api-token"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(2)
        else:
            pytest.fail("label-studio did not answer /health within 300 s")
        yield url, TOKEN
    finally:
        proc.terminate()
        proc.wait(30)


def _run(tmp_path, url, token, ckpt_path=None):
    from trinity_lightning.rounds.label_studio import LabelStudioOracle

    dm = datamodule(tmp_path, initial_labelled=12)
    oracle = LabelStudioOracle(url, token, choices=["a", "b", "c"], directory=str(tmp_path / "ls"), title="test")
    al = ActiveLearning("least_confidence", query_size=4, budget=16, oracle=oracle)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(
        max_epochs=-1, callbacks=[al, ckpt], logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(mlp(), datamodule=dm, ckpt_path=ckpt_path)
    return dm, al, oracle


def test_a_round_labelled_in_label_studio_resumes_the_campaign(tmp_path, label_studio):
    url, token = label_studio
    dm, al, oracle = _run(tmp_path, url, token)
    assert al.waiting and dm.n_labelled == 12
    queried = oracle.pending_indices(1)
    ls = oracle.client()
    tasks = list(ls.tasks.list(project=oracle._projects[1], fields="all"))
    assert sorted(t.data["trinity_index"] for t in tasks) == sorted(queried)
    given = {}
    for n, task in enumerate(tasks):  # a person labels in Label Studio (here through its API)
        choice = "abc"[n % 3]
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]
        ls.annotations.create(id=task.id, result=result)
        given[task.data["trinity_index"]] = n % 3
    dm, al, oracle = _run(tmp_path, url, token, ckpt_path="last")
    assert al.finished and dm.n_labelled == 16
    assert {i: dm.annotations[i] for i in queried} == given
