"""The labelling server without a browser: store rules, several annotators, security, new rounds, the CLI."""

from __future__ import annotations

import json
import threading

import pytest

from tests.labelling.conftest import write_queries
from trinity_lightning.active.cli import label_main
from trinity_lightning.rounds import FileOracle
from trinity_lightning.rounds.web import LabelStore, RejectedAnswerError, create_app, crowd_table

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient

TAGS = ["O", "B-PER", "I-PER"]
LOCAL = "http://127.0.0.1:8765"


@pytest.fixture
def round1(tmp_path):
    write_queries(
        tmp_path,
        1,
        [
            {"index": 3, "kind": "class", "example": {"text": "a cat"}, "choices": ["cat", "dog"]},
            {"index": 5, "kind": "tags", "example": {"tokens": ["<script>", "Anna", "Smith"]}, "choices": TAGS},
            {"index": 7, "kind": "yesno", "question": "Is this a dog?", "question_id": 2,
             "example": {"image": "../../../etc/passwd"}},
        ],
    )  # fmt: skip
    return tmp_path


def _post(client, **body):
    return client.post("/api/answer", json={"round": 1, "worker": "ann", **body})


def test_answers_are_validated_appended_and_read_by_the_file_oracle(round1):
    client = TestClient(create_app(LabelStore(round1)), base_url=LOCAL)
    assert client.get("/").status_code == 200
    assert [q["index"] for q in client.get("/api/queries").json()["queries"]] == [3, 5, 7]
    assert _post(client, index=3, label="dog").json() == {
        "saved": {"index": 3, "label": "dog", "worker": "ann"}, "count": 1, "complete": 1,
    }  # fmt: skip
    bad = _post(client, index=5, label=["O", "I-PER", "O"])
    assert bad.status_code == 400 and "an I- tag must continue" in bad.json()["error"]
    assert _post(client, index=5, label=["O", "B-PER", "I-PER"]).status_code == 200
    assert _post(client, index=7, label="yes").json()["saved"]["question_id"] == 2
    assert _post(client, index=7, label="no").status_code == 200  # a person changes their own answer
    answers = FileOracle(str(round1), wait=False).collect(1)
    assert answers is not None and answers.labels == [1, [0, 1, 2], False] and answers.workers == ["ann"] * 3
    state = client.get("/api/state", params={"worker": "ann"}).json()
    assert state["mine"] == [[3, "dog"], [5, ["O", "B-PER", "I-PER"]], [7, "no"]]
    assert (state["total"], state["complete"]) == (3, 3)


def test_unknown_items_stale_rounds_and_bad_workers_are_refused(round1):
    client = TestClient(create_app(LabelStore(round1)), base_url=LOCAL)
    assert _post(client, index=99, label="cat").status_code == 404
    assert _post(client, index="3", label="cat").status_code == 404
    assert client.post("/api/answer", json={"round": 2, "index": 3, "label": "cat", "worker": "a"}).status_code == 409
    assert client.post("/api/answer", json={"round": 1, "index": 3, "label": "cat", "worker": "<x>"}).status_code == 400
    assert client.post("/api/answer", json={"round": 1, "index": 3, "label": "cat"}).status_code == 400
    assert not (round1 / "round_0001.answers.jsonl").exists()


def test_k_answers_per_item_from_different_people_never_overwrite(round1):
    store = LabelStore(round1, answers_per_item=2)
    store.answer(1, 3, "dog", "ann")
    store.answer(1, 3, "cat", "bo")
    with pytest.raises(RejectedAnswerError, match=r"already has 2 answer\(s\) from other people") as err:
        store.answer(1, 3, "cat", "cy")
    assert err.value.status == 409
    store.answer(1, 3, "dog", "bo")  # bo changes bo's answer
    table = crowd_table(round1 / "round_0001.queries.jsonl")
    assert table.values.tolist() == [[3, "ann", "dog"], [3, "bo", "dog"]]
    one = LabelStore(round1)  # k=1: a second person cannot answer an answered item
    with pytest.raises(RejectedAnswerError):
        one.answer(1, 3, "cat", "cy")


def test_concurrent_annotators_lose_no_line(round1):
    write_queries(round1, 2, [{"index": i, "kind": "class", "choices": ["a", "b"]} for i in range(40)])
    store = LabelStore(round1, answers_per_item=4)

    def work(name):
        for i in range(40):
            store.answer(2, i, "a" if i % 2 else "b", name)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (round1 / "round_0002.answers.jsonl").read_text().splitlines()
    assert len(lines) == 160 and all(json.loads(line)["label"] in ("a", "b") for line in lines)
    assert len(crowd_table(round1 / "round_0002.queries.jsonl")) == 160


def test_external_appends_torn_lines_and_a_new_round_are_picked_up(round1):
    store = LabelStore(round1)
    answers = round1 / "round_0001.answers.jsonl"
    answers.write_text('{"index": 3, "label": "cat", "worker": "term"}\n{"index": 5, "lab')  # torn by a crash
    assert store.state("term")["mine"] == [[3, "cat"]]
    store.answer(1, 7, "y", "ann")  # append_answer closes the torn line first
    assert store.state("ann")["mine"] == [[7, "yes"]]
    with pytest.warns(UserWarning, match=r"answers.jsonl:2: .* \(line skipped\)"):
        assert FileOracle(str(round1), wait=False).collect(1) is None
    write_queries(round1, 2, [{"index": 11, "kind": "class", "choices": ["x", "y"]}])
    state = store.state("ann")
    assert (state["round"], state["total"], state["mine"]) == (2, 1, [])
    with pytest.raises(RejectedAnswerError, match="not the current round"):
        store.answer(1, 3, "dog", "ann")


def test_images_only_from_the_current_round_and_no_traversal(round1):
    (round1 / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    write_queries(
        round1,
        2,
        [{"index": 1, "example": {"image": "pic.png"}, "choices": ["a"]},
         {"index": 2, "example": {"image": "../secret.png"}, "choices": ["a"]},
         {"index": 3, "example": {"image": "round_0001.queries.jsonl"}, "choices": ["a"]}],
    )  # fmt: skip
    client = TestClient(create_app(LabelStore(round1)), base_url=LOCAL)
    ok = client.get("/api/image/2/1")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    for path in ("/api/image/1/7", "/api/image/2/2", "/api/image/2/3", "/api/image/2/9", "/api/image/2/..%2f..",
                 "/static/..%2fstore.py", "/static/index.html", "/api/image/x/1"):  # fmt: skip
        assert client.get(path).status_code == 404, path


def test_size_limits_json_only_and_security_headers(round1):
    client = TestClient(create_app(LabelStore(round1), max_body=1024), base_url=LOCAL)
    big = client.post("/api/answer", content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"})
    assert big.status_code == 413

    def chunks():
        yield from [b" " * 500] * 10

    streamed = client.post("/api/answer", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "over 1024 bytes" in streamed.json()["error"]
    assert client.post("/api/answer", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/answer", content=b"[1]", headers={"content-type": "application/json"}).status_code == 400
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text.replace('<script src="/static/app.js" defer></script>', "")


def test_loopback_server_refuses_other_host_names(round1):
    app = create_app(LabelStore(round1))
    assert TestClient(app, base_url="http://localhost:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://attacker.example:8765").get("/").status_code == 403


def test_token_is_checked_on_every_request(round1):
    app = create_app(LabelStore(round1), token="s3cret-token", loopback=False)
    client = TestClient(app, base_url="http://10.1.2.3:8765")
    assert client.get("/").status_code == 403
    assert client.get("/api/queries").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    first = client.get("/?token=s3cret-token")
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert client.get("/api/queries").status_code == 200  # the cookie now
    fresh = TestClient(app, base_url="http://10.1.2.3:8765")
    assert fresh.get("/api/queries?token=s3cret-token").status_code == 403  # the URL token opens the page only
    assert fresh.get("/api/queries", headers={"X-Trinity-Token": "s3cret-token"}).status_code == 200


def test_serve_generates_and_prints_a_token_for_a_non_loopback_host(round1, monkeypatch, capsys):
    import uvicorn

    seen = {}

    class FakeServer:
        def __init__(self, config):
            seen["app"], seen["host"] = config.app, config.host
            self.started, self.servers = True, []

        async def serve(self):
            import asyncio

            await asyncio.sleep(0.05)

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    from trinity_lightning.rounds.web import serve

    serve(round1, host="0.0.0.0", port=9999)
    out = capsys.readouterr().out
    assert "labelling round 1 (3 items) at http://0.0.0.0:9999/?token=" in out
    token = out.split("?token=")[1].split()[0]
    assert len(token) >= 24 and seen["app"].token == token and not seen["app"].loopback
    serve(round1, port=9999)
    assert "?token=" not in capsys.readouterr().out and seen["app"].token is None


def test_cli_web_flag_help_and_errors(tmp_path, capsys):
    assert label_main(["--web", "--help"]) == 0
    assert "--answers-per-item" in capsys.readouterr().out
    assert label_main(["--web", str(tmp_path / "missing")]) == 2
    assert "no such queries folder" in capsys.readouterr().err
    assert label_main(["--web", str(tmp_path), "--answers-per-item", "0"]) == 2


def test_crowd_file_oracle_waits_for_k_people_and_aggregates(tmp_path):
    from trinity_lightning.rounds.web import CrowdFileOracle

    write_queries(
        tmp_path,
        1,
        [{"index": i, "kind": "class", "choices": ["cat", "dog"]} for i in range(3)]
        + [{"index": 9, "kind": "tags", "example": {"tokens": ["Anna", "left"]}, "choices": TAGS}],
    )
    store = LabelStore(tmp_path, answers_per_item=3)
    votes = {"ann": ["cat", "dog", "dog"], "bo": ["cat", "dog", "cat"], "cy": ["dog", "dog", "cat"]}
    for worker, labels in votes.items():
        for i, label in enumerate(labels):
            store.answer(1, i, label, worker)
    store.answer(1, 9, "B-PER O", "ann")
    store.answer(1, 9, "B-PER O", "bo")
    majority = CrowdFileOracle(str(tmp_path), answers_per_item=3, wait=False)
    assert majority.collect(1) is None  # item 9 has 2 of 3 answers
    store.answer(1, 9, "O O", "cy")
    answers = majority.collect(1)
    assert answers is not None and answers.labels == [0, 1, 0, [1, 0]]
    ds = CrowdFileOracle(str(tmp_path), answers_per_item=3, aggregator="dawid_skene", wait=False).collect(1)
    assert ds is not None and ds.labels[:2] == [0, 1] and ds.labels[3] == [1, 0]
    with pytest.raises(ValueError, match="aggregator"):
        CrowdFileOracle(str(tmp_path), aggregator="vote")


def test_a_waiting_campaign_oracle_picks_up_answers_given_on_the_page(round1):
    oracle = FileOracle(str(round1), wait=True, poll_seconds=0.05, timeout=20)
    result = {}
    waiting = threading.Thread(target=lambda: result.setdefault("answers", oracle.collect(1)))
    waiting.start()
    client = TestClient(create_app(LabelStore(round1)), base_url=LOCAL)
    for index, label in ((3, "cat"), (5, ["B-PER", "I-PER", "O"]), (7, "no")):
        assert _post(client, index=index, label=label).status_code == 200
    waiting.join(20)
    assert result["answers"].labels == [0, [1, 2, 0], False]


@pytest.mark.slow
def test_trinity_label_web_in_a_fresh_interpreter_prints_its_url_and_serves(round1):
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from tests.labelling.conftest import free_port

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    port = free_port()
    cmd = [sys.executable, "-m", "trinity_lightning.cli", "label", "--web", str(round1), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"labelling round 1 (3 items) at http://127.0.0.1:{port}/"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queries", timeout=10) as reply:
            assert json.loads(reply.read())["round"] == 1
    finally:
        proc.terminate()
        proc.wait(20)
