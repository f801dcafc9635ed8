"""Multi-process (gloo) tests of the majority-vote hook: the vote, identical replicas, resume, faults."""

from __future__ import annotations

import pytest
import torch

from tests.distributed import _workers as w

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def replicas_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="module")
def two_workers(replicas_dir):
    """One 2-process run: 6 steps (NaN on rank 1 at step 3), a resume from state dicts, then rank 1 dies."""
    return w.launch(w.replicas_worker, 2, replicas_dir, 6, 0.9, 1e-2, 3)


def test_vote_matches_reference_majority_every_step(two_workers):
    for report in two_workers:
        matches = report["vote_matches"]
        assert matches[3] is True  # rank 1 abstained: rank 0's signs alone decide
        assert all(matches), matches


def test_several_buckets_and_hook_name(two_workers):
    assert two_workers[0]["buckets"] >= 2  # DDP caps the first rebuilt bucket at 1 MB
    assert two_workers[0]["comm_hook"] == "signsgd_hook"


def test_replicas_stay_bitwise_identical(two_workers):
    first, second = two_workers
    assert len(first["params"]) == 6
    for a, b in zip(first["params"], second["params"], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first["params"][0], first["params"][-1])


def test_resume_from_state_dicts_gives_the_same_next_update(two_workers):
    for report in two_workers:
        assert torch.equal(report["resumed_last"], report["params"][-1])


def test_error_feedback_buffers_resume_across_a_bucket_relayout(two_workers):
    for report in two_workers:
        ef = report["ef"]
        # saved from the rebuilt layout (several buckets), restored into DDP's initial one
        assert len(ef["layout"]) >= 2 and ef["resumed_layout"] != ef["layout"]
        assert sum(ef["layout"]) == sum(ef["resumed_layout"])
        errors = ef["saved"]["buffers"]["error"]
        assert errors and any(bool(v.abs().sum() > 0) for v in errors.values())
        assert ef["saved"]["buffers"]["momentum"] and ef["saved"]["error_feedback"] is True
        assert torch.equal(ef["resumed"], ef["params"])  # the same update, bitwise
        assert not torch.equal(ef["restarted"], ef["params"])  # the state matters for that update
    assert torch.equal(two_workers[0]["ef"]["params"], two_workers[1]["ef"]["params"])


def test_nonfinite_gradient_abstains_with_a_warning_naming_the_rank(two_workers):
    first, second = two_workers
    assert any("rank 1" in m and "abstains" in m for m in second["warnings"])
    assert any("rank 1 abstained" in m for m in first["warnings"])
    # both warnings point at the line that called backward(), not torch/autograd/graph.py
    files = first["warning_files"] + second["warning_files"]
    assert files and all(f.endswith("_workers.py") for f in files), files
    assert {(step, rank) for step, _, rank in first["abstained"]} == {(3, 1)}
    assert all(torch.isfinite(p).all() for p in first["params"])


@pytest.mark.slow
def test_three_workers_modes_adversary_and_error_feedback(tmp_path):
    reports = w.launch(w.three_worker, 3, tmp_path)
    raw = reports[0]["raw"]
    index = reports[0]["index"]
    expected = w.reference_vote(raw, 0, index)
    for report in reports:
        assert torch.equal(report["alltoall"], expected)
        assert torch.equal(report["allgather"], expected)
        assert torch.equal(report["adversary"], w.reference_vote([raw[0], raw[1], -raw[2]], 0, index))
        # error feedback: one scale per parameter tensor, the mean over workers of mean|g| on that tensor
        lengths = [p.numel() for p in w.make_model().parameters()]
        scale = torch.cat(
            [
                torch.stack([part.abs().mean() for part in parts]).mean().expand(n)
                for parts, n in zip(zip(*[g.split(lengths) for g in raw], strict=True), lengths, strict=True)
            ]
        )
        torch.testing.assert_close(report["ef"], scale * expected)
        assert torch.equal(report["ef"], reports[0]["ef"])
    # the adversary changed the vote only where the two honest workers disagreed
    honest_agree = torch.sign(raw[0]) == torch.sign(raw[1])
    assert torch.equal(reports[0]["adversary"][honest_agree], expected[honest_agree])


def test_dead_worker_fails_fast_with_a_clear_error(two_workers, replicas_dir):
    report = torch.load(replicas_dir / "dead_worker.pt", weights_only=False)
    assert report["error"] is not None and "worker has probably died" in report["error"]
    assert "rank 0" in report["error"]
    assert report["seconds"] < 15
