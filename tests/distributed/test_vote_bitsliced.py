"""The bit-sliced tree vote (any W, ties, abstentions), the fused momentum + pack, and the hook's unwaited future."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.distributed as dist

from tests.distributed.test_packing import reference_signs
from trinity_lightning.distributed import SignSGDState, signsgd_hook
from trinity_lightning.distributed.packing import (
    count_bits,
    majority_vote_packed,
    momentum_pack_signs,
    pack_signs,
    unpack_signs,
    vote_words,
)


def reference_vote_valid(signs: list[torch.Tensor], valid: list[bool], step: int) -> torch.Tensor:
    """Plain-number majority of the valid voters' +-1 signs: ties -> dither bit (i + step) % 2; none valid -> -1."""
    voters = [s for s, ok in zip(signs, valid, strict=True) if ok]
    if not voters:
        return -torch.ones_like(signs[0])
    return reference_signs(torch.stack(voters).sum(0), step)


@pytest.mark.parametrize("voters", range(1, 10))
@pytest.mark.parametrize("step", [0, 1])
def test_bitsliced_vote_equals_reference_for_every_w_with_ties_and_abstentions(voters, step):
    n = 509  # not a multiple of 64: padding words too
    gen = torch.Generator().manual_seed(voters * 10 + step)
    # few distinct values -> many exact zeros and many ties among the voters
    values = [torch.randint(-1, 2, (n,), generator=gen).float() for _ in range(voters)]
    signs = [reference_signs(v, step) for v in values]
    packed = torch.stack([pack_signs(v, step) for v in values])
    # every voter valid: the static threshold path
    voted = unpack_signs(majority_vote_packed(packed, step), n)
    assert torch.equal(voted, reference_vote_valid(signs, [True] * voters, step))
    # every subset pattern of abstentions (NaN workers) the test can afford, incl. none valid and all valid
    patterns = [[bool((mask >> i) & 1) for i in range(voters)] for mask in range(2**voters)]
    for valid in [*patterns[:: max(1, len(patterns) // 40)], patterns[-1], patterns[0]]:
        flags = torch.tensor(valid)
        voted = unpack_signs(majority_vote_packed(packed, step, valid=flags), n)
        expected = reference_vote_valid(signs, valid, step)
        assert torch.equal(voted, expected), (voters, valid)
    # ties really occurred for even W
    if voters % 2 == 0:
        assert bool((torch.stack(signs).sum(0) == 0).any())


def test_count_bits_counts_every_bit_position():
    gen = torch.Generator().manual_seed(0)
    for voters in range(1, 12):
        words = torch.randint(-(2**62), 2**62, (voters, 5), generator=gen)
        planes = count_bits(words)
        counts = sum((((p.unsqueeze(1) >> torch.arange(64)) & 1) << j) for j, p in enumerate(planes))
        expected = ((words.unsqueeze(2) >> torch.arange(64)) & 1).sum(0)
        assert torch.equal(counts, expected)


def test_vote_words_keeps_the_voter_count_on_the_device():
    words = torch.tensor([[0b0111], [0b0011], [0b0001], [-1]])
    # 3 valid voters: bit 0 (3 votes), bit 1 (2 votes) win; the abstaining all-ones row does not count
    assert int(vote_words(words, valid=torch.tensor([True, True, True, False]))[0]) == 3
    assert int(vote_words(words, valid=torch.zeros(4, dtype=torch.bool))[0]) == 0


def test_momentum_pack_signs_equals_lerp_then_pack_across_chunks(monkeypatch):
    import trinity_lightning.distributed.packing as packing

    monkeypatch.setattr(packing, "_CHUNK", 128)  # several chunks and a ragged tail
    gen = torch.Generator().manual_seed(1)
    grad = torch.randint(-2, 3, (1001,), generator=gen).float()
    momentum = torch.randint(-2, 3, (1001,), generator=gen).float()
    expected_m = momentum.clone().lerp_(grad, 0.1)
    expected = pack_signs(expected_m, 3)
    bits = momentum_pack_signs(momentum, grad, 0.9, 3)
    assert torch.equal(momentum, expected_m)
    assert torch.equal(bits, expected)


class FakeBucket:
    """The parts of ``dist.GradBucket`` the hook uses."""

    def __init__(self, index: int, last: bool, values: torch.Tensor, param: torch.nn.Parameter | None = None) -> None:
        self._index, self._last = index, last
        # DDP hands the hook the same parameter objects every step; the hook keys its buffers by them
        self._param = torch.nn.Parameter(torch.zeros(values.numel())) if param is None else param
        self._buffer = values.clone()

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def gradients(self) -> list[torch.Tensor]:
        return [self._buffer]

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self._param]

    def index(self) -> int:
        return self._index

    def is_last(self) -> bool:
        return self._last


class RecordingWork:
    """Wraps a collective's work object and records whether anyone waited on it."""

    def __init__(self, work: Any, log: list[str], name: str) -> None:
        self.work, self.log, self.name = work, log, name

    def wait(self, *args: Any) -> Any:
        self.log.append(f"wait {self.name}")
        return self.work.wait(*args)

    def get_future(self) -> Any:
        return self.work.get_future()


@pytest.fixture
def single_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_hook_returns_its_future_before_waiting_and_issues_collectives_in_bucket_order(
    single_process_group, monkeypatch
):
    log: list[str] = []
    for name in ("all_to_all_single", "all_gather_single", "all_gather_into_tensor"):
        original = getattr(dist, name, None)
        if original is None:
            continue

        def wrapped(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            log.append(f"issue {_name}")
            return RecordingWork(_original(*args, **kwargs), log, _name)

        monkeypatch.setattr(dist, name, wrapped)
    state = SignSGDState(momentum=0.0)
    first = FakeBucket(0, False, torch.tensor([1.0, -2.0, 0.5, -0.1]))
    second = FakeBucket(1, True, torch.tensor([-3.0, 4.0]))
    future = signsgd_hook(state, first)
    # bucket 0's all_to_all is in flight and nobody waited on it: backward can go on
    assert log == ["issue all_to_all_single"]
    assert not future.done()
    last = signsgd_hook(state, second)
    # bucket 1 (the last) issues its all_to_all, then bucket 0's vote (its wait) and all-gather; then it finishes
    # everything on this thread, in bucket order: no Python runs on the backend's threads
    gather = next(name for name in ("all_gather_single", "all_gather_into_tensor") if f"issue {name}" in log)
    assert log == [
        "issue all_to_all_single",
        "issue all_to_all_single",
        "wait all_to_all_single",
        f"issue {gather}",
        f"wait {gather}",
        "wait all_to_all_single",
        f"issue {gather}",
        f"wait {gather}",
    ]
    assert future.done() and last.done()
    assert torch.equal(future.wait(), torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert torch.equal(last.wait(), torch.tensor([-1.0, 1.0]))
    assert state.step == 1 and state._pending is None


def test_deferred_flags_abstain_without_reading_the_device_and_report_on_access(single_process_group):
    state = SignSGDState(momentum=0.5)
    state._defer_flags = True  # the GPU path, exercised on CPU
    first = FakeBucket(0, True, torch.tensor([1.0, -1.0]))
    signsgd_hook(state, first).wait()
    momentum = state._flat[("momentum", 0)][1].clone()
    bucket = FakeBucket(0, True, torch.tensor([float("nan"), 2.0]), param=first.parameters()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is read back (so nothing warns) during the step
        result = signsgd_hook(state, bucket).wait()
    assert torch.equal(result, torch.zeros(2))  # the only worker abstained: zero update
    assert torch.equal(state._flat[("momentum", 0)][1], momentum)  # its momentum is unchanged
    with pytest.warns(RuntimeWarning, match="rank 0 has non-finite"):
        assert state.abstained == [(1, 0, 0)]


def test_hook_completes_bucket_i_from_the_call_of_bucket_i_plus_2_on_its_own_thread(single_process_group):
    state = SignSGDState(momentum=0.0)
    values = [torch.tensor([1.0, -2.0]), torch.tensor([-1.0, 3.0]), torch.tensor([2.0, 2.0]), torch.tensor([-5.0, 1.0])]
    buckets = [FakeBucket(i, i == len(values) - 1, v) for i, v in enumerate(values)]
    futures = [signsgd_hook(state, buckets[0]), signsgd_hook(state, buckets[1])]
    assert not any(f.done() for f in futures)  # bucket 0's all-gather was issued by bucket 1's call, not waited
    futures.append(signsgd_hook(state, buckets[2]))
    assert [f.done() for f in futures] == [True, False, False]
    futures.append(signsgd_hook(state, buckets[3]))
    assert all(f.done() for f in futures) and state._pending is None and state._gathering is None
    for future, v in zip(futures, values):
        assert torch.equal(future.wait(), torch.sign(v))


def test_error_feedback_residual_is_p_minus_mean_abs_p_times_sign_without_temporaries(single_process_group):
    gen = torch.Generator().manual_seed(5)
    grad = torch.randn(1001, generator=gen)
    grad[::7] = 0.0  # zeros take the dither bit, and so does their residual's sign
    state = SignSGDState(momentum=0.5, error_feedback=True)
    bucket = FakeBucket(0, True, grad)
    result = signsgd_hook(state, bucket).wait()
    p = 0.5 * grad  # momentum from zero: m = (1 - beta) g; e starts at zero
    scale = p.abs().mean()
    signs = reference_signs(p, 0)
    torch.testing.assert_close(state._flat[("error", 0)][1], p - scale * signs, rtol=0, atol=1e-6)
    torch.testing.assert_close(result, scale * signs)  # one worker: the vote is its own signs, scaled
