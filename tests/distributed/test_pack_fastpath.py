"""The CPU packer's fast path (signs read from the values' own sign bits where a block's top bytes show no zero,
tiny, huge or non-finite value), its fall back to the dither rule block by block, the finiteness it proves on the
way, and the hook's signSGD path that uses it instead of a separate finiteness pass.

Byte for byte against the plain reference, padding included: blocks that take the fast path next to blocks that
take the rule, sizes that are not multiples of 8, 32 or 64, dither masks of tensors at odd offsets, every float
dtype, and the fused momentum update.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.distributed as dist

import trinity_lightning.distributed.packing as packing
from tests.distributed.test_packing import reference_signs
from tests.distributed.test_packing_signbit import reference_pack
from tests.distributed.test_vote_bitsliced import FakeBucket
from trinity_lightning.distributed import SignSGDState, signsgd_hook
from trinity_lightning.distributed.packing import (
    dither_mask,
    momentum_pack_signs,
    pack_finite_signs,
    pack_signs,
    unpack_signs,
)

SPECIALS = [0.0, -0.0, 1e-45, -1e-45, 1e-39, 2.0**-126, 3e38, -3e38, float("inf"), -float("inf")]


@pytest.fixture
def small_blocks(monkeypatch):
    """Chunks of 64 values and blocks of 128: many blocks, each taking the fast path or the rule on its own."""
    monkeypatch.setattr(packing, "_CHUNK", 64)
    monkeypatch.setattr(packing, "_BLOCK", 128)


@pytest.fixture
def multiplies(monkeypatch):
    """Counts the dither rule's multiplies (``torch.addcmul``): zero for a block on the fast path."""
    calls: list[int] = []
    original = torch.addcmul

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "addcmul", counting)
    return calls


def planted(n: int, seed: int, blocks: list[int], special: float, block: int = 128) -> torch.Tensor:
    """Random normal values (fast path everywhere) with ``special`` planted at a random place in each of
    ``blocks``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    for b in blocks:
        if b * block < n:
            x[b * block + int(torch.randint(0, min(block, n - b * block), (1,), generator=gen))] = special
    return x


@pytest.mark.parametrize("n", [1, 7, 63, 65, 127, 129, 255, 640, 1001])
@pytest.mark.parametrize("step", [0, 1])
def test_fast_path_alone_equals_reference_without_a_multiply(small_blocks, multiplies, n, step):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n + step))
    x[x.abs() < 1e-30] = 1.0  # no tiny value by chance
    assert torch.equal(pack_signs(x, step), reference_pack(x, step))
    assert not multiplies  # every block took the fast path
    assert torch.equal(unpack_signs(pack_signs(x, step), n), reference_signs(x, step))


@pytest.mark.parametrize("special", SPECIALS)
@pytest.mark.parametrize("step", [0, 1])
def test_blocks_with_a_zero_tiny_huge_or_infinite_value_take_the_rule_the_others_the_fast_path(
    small_blocks, multiplies, special, step
):
    n = 1001  # 8 blocks, the last one ragged (105 values)
    x = planted(n, seed=7 + step, blocks=[1, 4, 7], special=special)
    lengths = [5, 300, 1, 31, 664]  # tensors at odd offsets: the rule's dither bits differ from index mod 2
    expected = reference_pack(x, step, lengths)
    assert torch.equal(pack_signs(x, step, dither=dither_mask(lengths)), expected)
    assert torch.equal(pack_signs(x, step), reference_pack(x, step))
    # stop 17: the CPU packer compares (numpy) and merges the dither bits for zeros: no multiply in any block
    assert not multiplies


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_fast_path_reads_the_sign_bit_of_every_float_width(small_blocks, dtype):
    info = torch.finfo(dtype)
    x = planted(777, seed=3, blocks=[2], special=0.0).to(dtype)
    x[x == 0] = 0.0
    x[10] = info.max  # finite: its top byte's low 7 bits are all set only for float32/bfloat16/float64
    x[20] = -info.tiny
    for step in (0, 1):
        assert torch.equal(pack_signs(x, step), reference_pack(x, step))


def test_fused_momentum_update_on_fast_and_rule_blocks(small_blocks):
    lengths = [5, 64, 31, 900]
    gen = torch.Generator().manual_seed(4)
    momentum = torch.randn(1000, generator=gen)
    grad = torch.randn(1000, generator=gen)
    momentum[300:320] = 0.0  # block 2: lerp of 0 towards 0 stays 0
    grad[300:320] = 0.0
    for step in (0, 1, 2):
        expected = momentum.clone().lerp_(grad, 0.25)
        bits = momentum_pack_signs(momentum, grad, 0.75, step, dither=dither_mask(lengths))
        assert torch.equal(momentum, expected)  # updated once, also in the block packed twice
        assert torch.equal(bits, reference_pack(expected, step, lengths))


@pytest.mark.parametrize("n", [1, 9, 127, 129, 1001])
def test_pack_finite_signs_proves_finite_blocks_and_never_misses_a_non_finite_one(small_blocks, n):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    bits, finite = pack_finite_signs(x, 1)
    assert finite is True and torch.equal(bits, reference_pack(x, 1))
    for bad in (float("nan"), float("inf"), -float("inf")):
        for where in {0, n // 2, n - 1}:
            y = x.clone()
            y[where] = bad
            bits, finite = pack_finite_signs(y, 0)
            assert finite is False
            if bad == bad:  # the bits of an infinity are exact too (a NaN's are unspecified)
                assert torch.equal(bits, reference_pack(y, 0))
    y = x.clone()
    y[0] = 3e38  # finite, but not provably so from the top byte: False, the caller checks exactly
    assert pack_finite_signs(y, 0)[1] is False
    assert pack_finite_signs(torch.empty(0))[1] is True


def test_pack_finite_signs_on_half_precision_infinity_and_largest_value():
    half = torch.tensor([1.0, -2.0, 65504.0, -65504.0, 0.0], dtype=torch.float16)
    assert pack_finite_signs(half)[1] is True  # float16's largest value is provably finite
    assert pack_finite_signs(torch.cat([half, torch.tensor([float("inf")], dtype=torch.float16)]))[1] is False
    assert pack_finite_signs(torch.cat([half, torch.tensor([float("nan")], dtype=torch.float16)]))[1] is False
    e5m2 = torch.tensor([1.0, float("inf")]).to(torch.float8_e5m2)  # read through float32
    assert pack_finite_signs(e5m2)[1] is False


@pytest.fixture
def single_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_signsgd_without_momentum_abstains_on_a_non_finite_bucket_found_by_the_packing_pass(single_process_group, bad):
    state = SignSGDState(momentum=0.0)
    values = torch.randn(300, generator=torch.Generator().manual_seed(0))
    assert torch.equal(signsgd_hook(state, FakeBucket(0, True, values)).wait(), reference_signs(values, 0))
    values[123] = bad
    with pytest.warns(RuntimeWarning, match="rank 0 has non-finite"):
        result = signsgd_hook(state, FakeBucket(0, True, values)).wait()
    assert torch.equal(result, torch.zeros(300))  # the only worker abstained
    assert state.abstained == [(1, 0, 0)]
    raising = SignSGDState(momentum=0.0, nonfinite="raise")
    with pytest.raises(FloatingPointError, match="non-finite"):
        signsgd_hook(raising, FakeBucket(0, True, values))


def test_signsgd_without_momentum_votes_on_huge_finite_values(single_process_group):
    state = SignSGDState(momentum=0.0)
    values = torch.tensor([3e38, -3e38, 1.0, 0.0, -0.0, -1e-45])  # the exact check clears the suspicion
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = signsgd_hook(state, FakeBucket(0, True, values)).wait()
    assert torch.equal(result, reference_signs(values, 0))
    assert state.abstained == []


class ManyParamBucket:
    """A one-bucket stand-in with several parameters laid end to end (as DDP lays them out)."""

    def __init__(self, params: list[torch.nn.Parameter], values: torch.Tensor) -> None:
        self._params, self._buffer = params, values.clone()

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def gradients(self) -> list[torch.Tensor]:
        views, offset = [], 0
        for p in self._params:
            views.append(self._buffer[offset : offset + p.numel()])
            offset += p.numel()
        return views

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_error_feedback_equals_the_reference_across_chunk_block_and_parameter_edges(
    single_process_group, monkeypatch, momentum
):
    monkeypatch.setattr(packing, "_CHUNK", 64)  # parameters cross chunk and block edges; fast and rule blocks
    monkeypatch.setattr(packing, "_BLOCK", 128)
    sizes = [5, 0, 130, 1, 64, 300, 77]  # an empty parameter, one of a single value, odd offsets
    params = [torch.nn.Parameter(torch.zeros(n)) for n in sizes]
    index = torch.cat([torch.arange(n) for n in sizes])
    state = SignSGDState(momentum=momentum, error_feedback=True)
    gen = torch.Generator().manual_seed(2)
    m = torch.zeros(sum(sizes), dtype=torch.float64)
    e = torch.zeros(sum(sizes), dtype=torch.float64)
    for step in range(3):
        grad = torch.randn(sum(sizes), generator=gen)
        grad[::11] = 0.0
        result = signsgd_hook(state, ManyParamBucket(params, grad)).wait()
        m = momentum * m + (1 - momentum) * grad.double() if momentum else grad.double()
        p = m + e
        signs = reference_signs(p, step, index)
        scales = torch.cat(
            [torch.full((n,), float(part.abs().mean()) if n else 0.0) for part, n in zip(p.split(sizes), sizes)]
        ).double()
        e = p - scales * signs
        torch.testing.assert_close(state._flat[("error", 0)][1].double(), e, rtol=0, atol=1e-5)
        torch.testing.assert_close(result.double(), scales * signs, rtol=1e-6, atol=0)  # one worker: its own signs
        e = state._flat[("error", 0)][1].double()  # follow the float32 state (no drift from rounding)
        if momentum:
            m = state._flat[("momentum", 0)][1].double()
