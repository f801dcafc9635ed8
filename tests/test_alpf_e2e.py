"""``benchmarks/alpf_e2e.py``'s options: the per-round cosine learning rate, the stored-protocol check and the
merge's claim rule over two protocols (which one gives the contract ids, decided by completeness, never by
accuracy)."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import alpf_e2e  # noqa: E402


def test_round_cosine_decays_to_zero_within_a_round_and_restarts() -> None:
    f = alpf_e2e.round_cosine(10)
    values = [f(k) for k in range(21)]
    assert values[0] == values[10] == values[20] == 1.0  # every round starts at the base rate
    assert values[5] == pytest.approx(0.5)
    assert all(a > b for a, b in itertools.pairwise(values[:10]))  # decreasing within the round
    assert values[9] == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))


def _job(seed: int, runs: dict[str, tuple[float, int | None]]) -> dict:
    """A job file: each learner's curve ends at 30% with the given accuracy; the tuple's second item is its
    questions to full annotation."""

    def curve(acc: float) -> list[dict]:
        return [{"questions": q, "budget": b, "accuracy": a} for q, b, a in ((0, 0.0, 0.2), (30, 0.3, acc))]

    return {
        "seed": seed,
        "pool": 100,
        "test": 50,
        "warm": 5,
        "naive_cost": 100,
        "naive_cost_non_warm": 95,
        "questions_per_image": 3.4,
        "runs": {
            n: {"curve": curve(a), "questions_to_full": q, "cpu_seconds": 1.0, "seconds": 2.0}
            for n, (a, q) in runs.items()
        },
    }


def _protocol(work: Path, steps: int, jobs: list[dict]) -> Path:
    work.mkdir()
    settings = vars(alpf_e2e.parse_args(["--steps", str(steps), "--work", str(work)]))
    settings = {k: settings[k] for k in alpf_e2e.SETTINGS} | {"how_it_ran": "test"}
    (work / "settings.json").write_text(json.dumps(settings))
    for job in jobs:
        (work / f"alpf_e2e_s{job['seed']}.json").write_text(json.dumps(job))
    return work


def _merge(tmp_path: Path, works: list[Path]) -> dict:
    args = alpf_e2e.parse_args(
        [
            *("--merge", "--seeds", "0", "1", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "p.png")),
            *("--protocols", *map(str, works)),
        ]
    )
    alpf_e2e.merge(args)
    assert (tmp_path / "p.png").exists()
    return json.loads((tmp_path / "alpf_e2e.json").read_text())


def test_merge_takes_the_claims_from_the_first_complete_protocol_and_suffixes_the_other(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    big = _protocol(tmp_path / "big", 200, [_job(0, full), _job(1, full)])
    small = _protocol(tmp_path / "small", 120, [_job(0, full | {"eig": (0.40, None)}), _job(1, full)])
    claims = {c["id"]: c for c in _merge(tmp_path, [big, small])["claims"]}
    best = claims["alpf_best_vs_uniform_at_30pct"]
    assert (best["best"], best["delta"]) == ("eig", pytest.approx(6.0))  # the big protocol's EIG, paired means
    assert claims["alpf_erc_vs_uniform_at_30pct"]["delta"] == pytest.approx(2.0)
    assert claims["questions_to_full_annotation_vs_uniform"]["ratio"] == pytest.approx(95 / 80)
    beside = claims["alpf_best_vs_uniform_at_30pct_pool2000_steps120"]
    assert (beside["best"], beside["delta"]) == ("alpf_erc", pytest.approx(2.0))  # EIG there: (40 + 56) / 2 - 50


def test_an_incomplete_protocol_leaves_the_contract_ids_to_the_next_and_keeps_a_stopped_runs_rounds(
    tmp_path: Path,
) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    # the big protocol: seed 1's ALPF-ERC was stopped on its way to full annotation after its 30% round
    big = _protocol(tmp_path / "big", 200, [_job(0, full), _job(1, {"uniform": (0.5, None), "eig": (0.5, None)})])
    (big / "progress_s1_alpf_erc.json").write_text(json.dumps({"curve": _job(1, full)["runs"]["alpf_erc"]["curve"]}))
    small = _protocol(tmp_path / "small", 120, [_job(0, full), _job(1, full)])
    result = _merge(tmp_path, [big, small])
    claims = {c["id"]: c for c in result["claims"]}
    # accuracy rows complete in the big protocol (the stopped run reached 30%): its rows are the contract ids
    assert result["details"]["claim_protocol"] == {
        "accuracy": "pool2000_steps200",
        "questions_to_full": "pool2000_steps120",
    }
    assert claims["alpf_erc_vs_uniform_at_30pct"]["seeds"] == [0, 1]
    assert result["details"]["protocols"]["pool2000_steps200"]["unfinished_runs"] == ["alpf_erc seed 1"]
    walls = result["details"]["protocols"]["pool2000_steps200"]["wall_seconds_per_run"]
    assert walls["uniform"] == {"0": 2.0, "1": 2.0} and walls["alpf_erc"] == {"0": 2.0}  # no round times stored
    assert claims["questions_to_full_annotation_vs_uniform_pool2000_steps200"]["per_seed"][0]["seed"] == 0
    assert "questions_to_full_annotation_vs_uniform" in claims  # from the small protocol, both seeds
    assert len(claims["questions_to_full_annotation_vs_uniform"]["per_seed"]) == 2


def test_a_job_with_other_settings_is_refused(tmp_path: Path) -> None:
    args = alpf_e2e.parse_args(["--steps", "120", "--work", str(tmp_path)])
    alpf_e2e.check_settings(tmp_path, args)
    alpf_e2e.check_settings(tmp_path, args)  # the same protocol: accepted
    with pytest.raises(SystemExit, match="steps"):
        alpf_e2e.check_settings(tmp_path, alpf_e2e.parse_args(["--steps", "200", "--work", str(tmp_path)]))


def test_a_protocol_read_back_from_a_committed_results_file_keeps_its_rows_and_details(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    big = _protocol(tmp_path / "big", 200, [_job(0, full), _job(1, full)])
    small = _protocol(
        tmp_path / "small", 120, [_job(0, full | {"eig": (0.40, None)}), _job(1, full | {"edc": (0.3, None)})]
    )
    first = _merge(tmp_path, [big, small])
    stored = tmp_path / "stored.json"
    stored.write_text(json.dumps(first))
    # the small protocol's job files are gone: it comes back from the results file, the big one from its folder
    again = _merge(tmp_path, [big, Path(f"{stored}#pool2000_steps120")])
    assert again["claims"] == first["claims"]
    assert again["details"]["protocols"] == first["details"]["protocols"]
    assert again["details"]["claim_protocol"] == first["details"]["claim_protocol"]
    with pytest.raises(SystemExit, match="pool5000"):
        alpf_e2e.load_stored_protocol(f"{stored}#pool5000_steps200", [0, 1])


def test_a_jobs_own_merge_writes_into_its_work_folder_not_the_committed_results(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    work = _protocol(tmp_path / "work", 200, [_job(0, full), _job(1, full)])
    args = alpf_e2e.parse_args(["--seeds", "0", "1", "--work", str(work)])  # what a job runs after its campaigns
    alpf_e2e.merge(args)
    assert (work / "alpf_e2e.json").exists() and (work / "p.png").exists()
    assert alpf_e2e.parse_args(["--merge"]).out_dir is None  # --merge: benchmarks/results (resolved in merge)


def test_beside_runs_go_into_details_only(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    main = _protocol(tmp_path / "main", 200, [_job(0, full), _job(1, full)])
    big = _protocol(tmp_path / "big", 400, [_job(0, {"uniform": (0.60, None), "eig": (0.58, None)})])
    args = alpf_e2e.parse_args(
        [
            *("--merge", "--seeds", "0", "1", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "p.png")),
            *("--protocols", str(main), "--beside", str(big)),
        ]
    )
    alpf_e2e.merge(args)
    result = json.loads((tmp_path / "alpf_e2e.json").read_text())
    assert not [c for c in result["claims"] if "steps400" in c["id"]]  # no claims row from a beside-run
    row = result["details"]["beside_runs"]["pool2000_steps400"]
    acc = row["accuracy_at_until_per_seed"]
    assert (acc["uniform"]["0"], acc["eig"]["0"]) == (pytest.approx(60.0), pytest.approx(58.0))
    assert "alpf_erc" not in acc
    assert list(result["details"]["protocols"]) == ["pool2000_steps200"]


def test_beside_runs_read_back_from_the_results_file_keep_their_details_and_a_plan_goes_with_its_run(
    tmp_path: Path,
) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    main = _protocol(tmp_path / "main", 200, [_job(0, full), _job(1, full)])
    big = _protocol(tmp_path / "big", 400, [_job(0, {"uniform": (0.60, None), "eig": (0.58, None)})])
    plan = {"written_at": "2026-12-04T16:10Z", "rule": "claims move only if all three learners finish all seeds"}
    (big / "plan.json").write_text(json.dumps(plan))

    def merge(protocols: list[str], beside: list[str], out: Path) -> dict:
        out.mkdir()
        args = alpf_e2e.parse_args(
            [
                *("--merge", "--seeds", "0", "1", "--out-dir", str(out), "--plot", str(out / "p.png")),
                *("--protocols", *protocols, "--beside", *beside),
            ]
        )
        alpf_e2e.merge(args)
        return json.loads((out / "alpf_e2e.json").read_text())

    first = merge([str(main)], [str(big)], tmp_path / "first")
    row = first["details"]["beside_runs"]["pool2000_steps400"]
    assert row["plan"] == plan
    assert row["delta_vs_uniform_per_seed"] == {"eig": {"0": pytest.approx(-2.0)}}
    # both folders gone: the protocol and the beside-run come back from the results file, unchanged
    stored = tmp_path / "first" / "alpf_e2e.json"
    again = merge([f"{stored}#pool2000_steps200"], [f"{stored}#pool2000_steps400"], tmp_path / "again")
    assert again["claims"] == first["claims"]
    assert again["details"]["beside_runs"] == first["details"]["beside_runs"]
    assert again["details"]["protocols"] == first["details"]["protocols"]
    with pytest.raises(SystemExit, match="pool50000"):
        alpf_e2e.load_stored_beside(f"{stored}#pool50000_steps2000")
    # a beside-run drawn as one more panel of the plot; an unknown one is refused by name
    merge([str(main)], [str(big), "--plot-beside", "pool2000_steps400"], tmp_path / "drawn")
    with pytest.raises(SystemExit, match="--plot-beside pool9_steps9"):
        merge([str(main)], [str(big), "--plot-beside", "pool9_steps9"], tmp_path / "refused")


def test_a_stopped_run_counts_the_cpu_seconds_to_its_last_measured_round(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    work = _protocol(tmp_path / "w", 200, [_job(0, {"uniform": (0.5, None), "eig": (0.5, None)})])
    progress = {"curve": _job(0, full)["runs"]["alpf_erc"]["curve"], "round_cpu_seconds": [10.0, 25.5]}
    (work / "progress_s0_alpf_erc.json").write_text(json.dumps(progress))
    _, jobs = alpf_e2e.load_protocol(work, [0])
    run = jobs[0]["runs"]["alpf_erc"]
    assert (run["unfinished"], run["cpu_seconds"], run["questions_to_full"]) == (True, 25.5, None)


def test_progress_records_cumulative_cpu_and_wall_seconds_per_measured_round(tmp_path: Path) -> None:
    class FakeRounds:
        def __init__(self) -> None:
            self.curve: list[dict] = []

    rounds = FakeRounds()
    progress = alpf_e2e.Progress(tmp_path / "p.json", rounds)  # type: ignore[arg-type]
    for n in (1, 1, 2):  # the second validation measured no new round
        rounds.curve = [{"questions": k} for k in range(n)]
        progress.on_validation_end(None, None)  # type: ignore[arg-type]
    row = json.loads((tmp_path / "p.json").read_text())
    assert len(row["curve"]) == len(row["round_cpu_seconds"]) == len(row["round_seconds"]) == 2
    assert 0 <= row["round_cpu_seconds"][0] <= row["round_cpu_seconds"][1]


def test_the_small_resnet_trains_on_cifar_shaped_batches_and_tags_its_protocol() -> None:
    import torch

    net = alpf_e2e.small_resnet(10, 8)
    out = net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()  # every parameter gets a gradient
    assert all(p.grad is not None for p in net.parameters())
    settings = vars(alpf_e2e.parse_args(["--model", "resnet", "--width", "32", "--batch-size", "256", "--scale", "1"]))
    settings |= {"schedule": "cosine", "steps": 500}
    assert alpf_e2e.protocol_tag(settings) == "pool50000_steps500_cosine_resnet32_b256"
    old = {"pool": 50000, "steps": 2000, "schedule": "cosine"}  # stored before the model / batch settings existed
    assert alpf_e2e.protocol_tag(old) == "pool50000_steps2000_cosine"


def test_augment_keeps_a_batch_on_its_device_and_shape() -> None:
    import torch

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = alpf_e2e.augment(x)
    assert y.shape == x.shape and y.device == x.device


def test_a_folder_stored_without_the_new_settings_accepts_their_defaults_only(tmp_path: Path) -> None:
    args = alpf_e2e.parse_args(["--steps", "120", "--work", str(tmp_path)])
    stored = {k: v for k, v in alpf_e2e.protocol_settings(args).items() if k not in alpf_e2e.SETTING_DEFAULTS}
    (tmp_path / "settings.json").write_text(json.dumps(stored))
    alpf_e2e.check_settings(tmp_path, args)  # model cnn, batch 64, fp32: the stored protocol's
    with pytest.raises(SystemExit, match="model"):
        alpf_e2e.check_settings(tmp_path, alpf_e2e.parse_args(["--steps", "120", "--model", "resnet"]))


def test_learners_of_one_seed_stored_by_separate_processes_keep_each_others_rows(tmp_path: Path) -> None:
    path = tmp_path / "alpf_e2e_s0.json"
    job = _job(0, {})
    mine = alpf_e2e._store_run(path, json.loads(json.dumps(job)), "uniform", {"curve": [], "questions_to_full": 1})
    # another process started from the empty job file and stores its learner later
    theirs = alpf_e2e._store_run(path, json.loads(json.dumps(job)), "eig", {"curve": [], "questions_to_full": None})
    assert set(mine["runs"]) == {"uniform"}
    assert set(theirs["runs"]) == set(json.loads(path.read_text())["runs"]) == {"uniform", "eig"}


def test_a_run_stopped_before_the_30pct_round_counts_nowhere(tmp_path: Path) -> None:
    full = {"uniform": (0.50, None), "alpf_erc": (0.52, 80), "eig": (0.56, None)}
    job = _job(1, full)
    job["runs"]["eig"]["curve"] = job["runs"]["eig"]["curve"][:1]  # stopped by --stop-at after the warm start
    job["runs"]["eig"]["stopped_at_deadline"] = True
    big = _protocol(tmp_path / "big", 200, [_job(0, full), job])
    small = _protocol(tmp_path / "small", 120, [_job(0, full), _job(1, full)])
    result = _merge(tmp_path, [big, small])
    details = result["details"]["protocols"]["pool2000_steps200"]
    assert details["short_runs"] == {"eig seed 1": job["runs"]["eig"]["curve"]}
    assert (
        "1" not in details["accuracy_at_until_per_seed"]["eig"]
        and 1 not in details["accuracy_at_until_per_seed"]["eig"]
    )
    assert result["details"]["claim_protocol"]["accuracy"] == "pool2000_steps120"  # the big one lacks EIG seed 1


def test_the_device_pack_rebuilds_the_same_jpeg_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    data = tmp_path / "data"
    (data / "cifar10_jpeg").mkdir(parents=True)
    (data / "wordnet_nouns").mkdir()
    (data / "wordnet_nouns" / alpf_e2e.WORDNET).write_bytes(b"tree")
    members = {f"train/cat/{k:04d}.jpg": bytes([k]) * (k + 3) for k in range(1, 6)} | {"test/dog/0001.jpg": b"x"}
    with zipfile.ZipFile(data / "cifar10_jpeg" / "cifar10_jpeg.zip", "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    monkeypatch.setenv("TRINITY_DATA", str(data))
    alpf_e2e.pack_cifar10(tmp_path / "carry")
    out = alpf_e2e.unpack_cifar10(tmp_path / "carry", tmp_path / "root")
    with zipfile.ZipFile(out) as z:
        assert {n: z.read(n) for n in z.namelist()} == members
    assert (tmp_path / "root" / "wordnet_nouns" / alpf_e2e.WORDNET).read_bytes() == b"tree"


@pytest.mark.slow
def test_the_device_script_runs_the_whole_path_on_the_cpu(tmp_path: Path) -> None:
    """``benchmarks/alpf_e2e_device.sh`` end to end at a tiny size on the CPU: pack, unpack, decode, two learners
    in parallel processes on one seed, the merge and the returned work folder (about a minute)."""
    import os
    import subprocess
    import tarfile

    from trinity_lightning.data import dataset_dir

    try:
        dataset_dir("cifar10_jpeg")
        dataset_dir("wordnet_nouns")
    except FileNotFoundError:
        pytest.skip("needs the shared CIFAR-10 and WordNet data (TRINITY_DATA)")
    alpf_e2e.pack_cifar10(tmp_path / "pack")
    env = os.environ | {
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "DATA": str(tmp_path / "pack"),
        "DEVICE": "cpu",
        "PRECISION": "32-true",
        "PROBE": "1",
        "SEEDS": "0",
        "STRATEGIES": "uniform alpf_erc",
        "BUDGET": "300",
        "ARGS": "--scale 0.02 --steps 3 --model resnet --width 8 --batch-size 32 --schedule cosine",
        "TRINITY_CACHE": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "alpf_e2e_device.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "alpf_e2e.json").read_text())
    (tag,) = result["details"]["protocols"]
    assert tag == "pool1000_steps3_cosine_resnet8_b32"  # this call's settings, in a fresh work folder
    runs = result["details"]["protocols"][tag]["questions_to_full"]
    assert set(runs) >= {"uniform", "alpf_erc"} and runs["uniform"]["0"] and runs["alpf_erc"]["0"]
    with tarfile.open(tmp_path / "out" / "alpf_work.tgz") as tar:
        names = set(tar.getnames())
    assert {"./settings.json", "./alpf_e2e_s0.json", "./log_s0_uniform.txt"} <= names
