"""The CPU packer (two comparisons and numpy's ``packbits`` per cache-sized chunk, the momentum update and the
finiteness proof in the same pass) against the plain reference and the accelerator's rule path, and the hook's
momentum path on a non-finite bucket.

Byte for byte, padding included: sizes that are not multiples of the chunk (nor of 8 or 64), dither masks of
tensors at odd offsets, zeros of both signs, NaN/inf in the first and in the last chunk, float16, bfloat16,
float32 and float64 buckets, and the fused momentum update.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import trinity_lightning.distributed.packing as packing
from tests.distributed.test_packing import reference_signs
from tests.distributed.test_packing_signbit import adversarial, reference_pack
from tests.distributed.test_vote_bitsliced import FakeBucket
from trinity_lightning.distributed import SignSGDState, signsgd_hook
from trinity_lightning.distributed.packing import (
    dither_mask,
    momentum_pack_signs,
    pack_finite_signs,
    pack_signs,
    packed_size,
)

SIZES = [1, 7, 63, 64, 65, 127, 129, 200, 1001]
LENGTHS = [5, 64, 1, 31, 900]  # tensors at odd offsets 0 5 69 70 101


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 values: many chunk edges (and a ragged last chunk) in a few hundred values."""
    monkeypatch.setattr(packing, "_CHUNK", 64)
    monkeypatch.setattr(packing, "_BLOCK", 128)


def lengths_of(n: int) -> list[int]:
    """:data:`LENGTHS` cut or extended to ``n`` values."""
    out, total = [], 0
    for length in LENGTHS:
        take = min(length, n - total)
        if take > 0:
            out.append(take)
            total += take
    if total < n:
        out.append(n - total)
    return out


def rule_pack(x: torch.Tensor, step: int, dither: torch.Tensor | None = None) -> torch.Tensor:
    """The accelerator's rule path (multiply by the dither sign, read the sign bytes), run on the CPU tensor."""
    flat = x.reshape(-1)
    result = torch.empty(packed_size(flat.numel()), dtype=torch.uint8)
    return packing._pack_rule(flat, result, step, dither)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("step", [0, 1])
def test_cpu_packer_equals_reference_and_the_rule_path_across_chunk_edges(small_chunks, n, step):
    x = adversarial(n, seed=n + 11 * step)
    x[:: max(1, n // 9)] = 0.0  # zeros in several chunks
    x[1::13] = -0.0
    lengths = lengths_of(n)
    mask = dither_mask(lengths)
    expected = reference_pack(x, step, lengths)
    assert torch.equal(pack_signs(x, step, dither=mask), expected)
    assert torch.equal(rule_pack(x, step, mask), expected)
    assert torch.equal(pack_signs(x, step), reference_pack(x, step))
    if n % 8:
        assert int(pack_signs(x, step, dither=mask)[-1]) >> (n % 8) == 0  # padding bits stay 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("step", [0, 1])
def test_cpu_packer_and_fused_momentum_on_every_bucket_dtype(small_chunks, dtype, step):
    n = 777
    lengths = lengths_of(n)
    mask = dither_mask(lengths)
    x = adversarial(n, seed=5, dtype=dtype)
    assert torch.equal(pack_signs(x, step, dither=mask), reference_pack(x, step, lengths))
    assert torch.equal(rule_pack(x, step, mask), reference_pack(x, step, lengths))
    gen = torch.Generator().manual_seed(step)
    momentum = torch.randn(n, generator=gen).to(dtype)
    grad = torch.randn(n, generator=gen).to(dtype)
    momentum[::7] = 0.0
    grad[::7] = 0.0  # lerp of 0 towards 0 stays 0: zeros reach the packer
    expected = momentum.clone().lerp_(grad, 0.25)
    bits = momentum_pack_signs(momentum, grad, 0.75, step, dither=mask)
    assert torch.equal(momentum, expected)
    assert torch.equal(bits, reference_pack(expected, step, lengths))


def test_cpu_packer_at_an_odd_offset_into_a_larger_buffer(small_chunks):
    base = adversarial(1100, seed=9)
    x = base[3:1004]  # a view that starts 3 values into its storage
    out = torch.full((200,), 0xFF, dtype=torch.uint8)
    bits = pack_signs(x, 1, out=out[5:], dither=dither_mask(lengths_of(1001)))
    assert torch.equal(bits, reference_pack(x, 1, lengths_of(1001)))
    assert bits.data_ptr() == out[5:].data_ptr()
    assert out[:5].tolist() == [0xFF] * 5 and out[5 + packed_size(1001) :].eq(0xFF).all()  # nothing else written


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_pack_finite_signs_finds_a_non_finite_value_in_the_first_or_last_chunk(small_chunks, where, bad):
    x = torch.randn(1001, generator=torch.Generator().manual_seed(1))
    assert pack_finite_signs(x)[1] is True
    x[0 if where == "first" else 1000] = bad
    bits, finite = pack_finite_signs(x, 1)
    assert finite is False
    if bad == bad:
        assert torch.equal(bits, reference_pack(x, 1))


def test_a_nan_of_either_sign_gets_the_dither_bit():
    x = torch.tensor([float("nan"), -float("nan"), float("nan"), -float("nan"), 1.0])
    assert torch.equal(pack_signs(x, 0), reference_pack(torch.zeros(5).index_fill_(0, torch.tensor([4]), 1.0), 0))


@pytest.fixture
def single_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_momentum_bucket_with_a_non_finite_value_in_the_first_or_last_chunk_abstains_unchanged(
    single_process_group, small_chunks, where, bad
):
    state = SignSGDState(momentum=0.5)
    param = torch.nn.Parameter(torch.zeros(1001))
    gen = torch.Generator().manual_seed(3)
    first = torch.randn(1001, generator=gen)
    signsgd_hook(state, FakeBucket(0, True, first, param)).wait()
    momentum = state._flat[("momentum", 0)][1].clone()
    assert torch.equal(momentum, torch.zeros(1001).lerp_(first, 0.5))
    grad = torch.randn(1001, generator=gen)
    grad[0 if where == "first" else 1000] = bad
    with pytest.warns(RuntimeWarning, match="rank 0 has non-finite"):
        result = signsgd_hook(state, FakeBucket(0, True, grad, param)).wait()
    assert torch.equal(state._flat[("momentum", 0)][1], momentum)  # bit for bit unchanged
    assert torch.equal(result, torch.zeros(1001))  # the only worker abstained
    assert state.abstained == [(1, 0, 0)]
    grad[0 if where == "first" else 1000] = 0.25
    result = signsgd_hook(state, FakeBucket(0, True, grad, param)).wait()  # the next step votes again
    assert torch.equal(result, reference_signs(momentum.lerp_(grad, 0.5), 2))


def test_cpu_packer_reads_strided_negated_and_grad_requiring_tensors(small_chunks):
    x = adversarial(1000, seed=4)
    x[::7] = 0.0
    strided = x[::3]  # a 1-D view with stride 3: packed through numpy's strided views
    assert torch.equal(pack_signs(strided, 1), reference_pack(strided.contiguous(), 1))
    assert torch.equal(pack_signs(x.to(torch.bfloat16)[::3], 0), reference_pack(x.to(torch.bfloat16)[::3], 0))
    assert torch.equal(pack_signs(x._neg_view(), 1), reference_pack(-x, 1))  # the lazily negated values
    leaf = x.clone().requires_grad_()
    assert torch.equal(pack_signs(leaf, 0), reference_pack(x, 0))
    assert torch.equal(pack_signs(x.view(40, 25).t(), 0), reference_pack(x.view(40, 25).t().reshape(-1), 0))
