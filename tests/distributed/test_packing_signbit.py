"""The comparison-free sign packer (sign bit of ``s * x + 0`` xor the dither bit) against a plain reference.

Byte for byte, padding included: random and adversarial values (``+0``, ``-0``, denormals, infinities, the
largest floats), sizes that are not multiples of 8, 32 or 64, several chunks and blocks, every float dtype,
dither masks of tensors that start at odd offsets, and the fused momentum update.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import trinity_lightning.distributed.packing as packing
from tests.distributed.test_packing import reference_signs
from trinity_lightning.distributed.packing import (
    dither_mask,
    momentum_pack_signs,
    pack_signs,
    packed_size,
    unpack_signs,
)


def reference_pack(x: torch.Tensor, step: int, lengths: list[int] | None = None) -> torch.Tensor:
    """Pack with plain comparisons: bit k of byte j is 1 where coordinate 8j+k is positive (zeros: the dither bit
    of its index inside its own tensor), padding bits 0."""
    flat = x.reshape(-1).double()
    index = None if lengths is None else torch.cat([torch.arange(n) for n in lengths])
    bits = (reference_signs(flat, step, index) > 0).to(torch.int64)
    padded = torch.zeros(packed_size(flat.numel()) * 8, dtype=torch.int64)
    padded[: bits.numel()] = bits
    return (padded.view(-1, 8) << torch.arange(8)).sum(1).to(torch.uint8)


def adversarial(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random values with many +0 and -0, denormals, infinities and extreme magnitudes mixed in."""
    gen = torch.Generator().manual_seed(seed)
    info = torch.finfo(dtype)
    x = torch.randn(n, generator=gen, dtype=torch.float64).to(dtype)
    specials = torch.tensor(
        [
            0.0,
            -0.0,
            info.tiny / 4,
            -info.tiny / 4,
            info.tiny,
            -info.tiny,
            info.max,
            -info.max,
            float("inf"),
            -float("inf"),
        ],
        dtype=dtype,
    )
    pick = torch.randint(0, 3 * specials.numel(), (n,), generator=gen)
    special = pick < specials.numel()
    x[special] = specials[pick[special]]
    return x


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 values and blocks of 128: every chunk and block boundary case in a few hundred values."""
    monkeypatch.setattr(packing, "_CHUNK", 64)
    monkeypatch.setattr(packing, "_BLOCK", 128)


@pytest.mark.parametrize("n", [1, 5, 8, 31, 33, 63, 64, 65, 127, 129, 200, 1001])
@pytest.mark.parametrize("step", [0, 1])
def test_pack_equals_reference_bytes_on_adversarial_values_across_chunks(small_chunks, n, step):
    x = adversarial(n, seed=n + 7 * step)
    packed = pack_signs(x, step)
    assert torch.equal(packed, reference_pack(x, step))
    assert torch.equal(unpack_signs(packed, n), reference_signs(x, step))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn])
def test_every_float_dtype_reads_its_own_sign_bit(dtype):
    x = adversarial(777, seed=3, dtype=torch.float32 if dtype == torch.float8_e4m3fn else dtype)
    x = x.nan_to_num(posinf=1.0, neginf=-1.0).to(dtype)  # float8 e4m3fn has no infinity
    for step in (0, 1):
        exact = x.float() if dtype == torch.float8_e4m3fn else x  # float64 denormals would underflow in float32
        assert torch.equal(pack_signs(x, step), reference_pack(exact, step))


def test_zeros_of_both_signs_get_the_dither_bit():
    x = torch.tensor([0.0, -0.0, 0.0, -0.0, -0.0, 0.0, 1e-45, -1e-45, 0.0])  # 1e-45: the smallest denormal
    assert unpack_signs(pack_signs(x, 0), 9).tolist() == [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0]
    assert unpack_signs(pack_signs(x, 1), 9).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0]


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 90), min_size=1, max_size=8),
    step=st.integers(0, 3),
    seed=st.integers(0, 10_000),
)
def test_dither_mask_with_tensors_at_odd_offsets_equals_reference(lengths, step, seed):
    x = adversarial(sum(lengths), seed)
    x[torch.rand(x.numel(), generator=torch.Generator().manual_seed(seed)) < 0.3] = 0.0
    mask = dither_mask(lengths)
    with pytest.MonkeyPatch.context() as patch:  # hypothesis runs many examples per fixture: patch per example
        patch.setattr(packing, "_CHUNK", 64)
        patch.setattr(packing, "_BLOCK", 128)
        assert torch.equal(pack_signs(x, step, dither=mask), reference_pack(x, step, lengths))


def test_odd_phase_ranges_follow_the_tensor_offsets_and_a_changed_mask():
    lengths = [3, 6, 1, 9, 64, 5, 70]  # offsets 0 3 9 10 19 83 88
    mask = dither_mask(lengths)
    assert packing._odd_phase_ranges(mask, sum(lengths)) == [(3, 10), (19, 88)]
    assert packing._odd_phase_ranges(mask, sum(lengths)) is packing._odd_phase_ranges(mask, sum(lengths))  # cached
    mask.copy_(dither_mask([sum(lengths)]))  # one tensor now: the cache sees the new version
    assert packing._odd_phase_ranges(mask, sum(lengths)) == []
    x = torch.zeros(sum(lengths))
    assert torch.equal(pack_signs(x, 1, dither=mask), reference_pack(x, 1))


@pytest.mark.parametrize("step", [0, 1])
def test_fused_momentum_pack_equals_lerp_then_reference_on_adversarial_values(small_chunks, step):
    lengths = [5, 64, 31, 100]
    gen = torch.Generator().manual_seed(step)
    momentum = adversarial(200, seed=11).nan_to_num(posinf=2.0, neginf=-2.0)
    grad = torch.randint(-2, 3, (200,), generator=gen).float()
    momentum[::3] = 0.0  # lerp of 0 towards 0 stays 0: zeros reach the packer
    grad[::3] = 0.0
    expected = momentum.clone().lerp_(grad, 0.25)
    mask = dither_mask(lengths)
    bits = momentum_pack_signs(momentum, grad, 0.75, step, dither=mask)
    assert torch.equal(momentum, expected)
    assert torch.equal(bits, reference_pack(expected, step, lengths))


def test_empty_input_and_a_too_short_mask():
    assert pack_signs(torch.empty(0)).numel() == 0
    with pytest.raises(ValueError, match="dither"):
        pack_signs(torch.ones(100), dither=dither_mask([10]))
    with pytest.raises(TypeError, match="momentum"):
        momentum_pack_signs(torch.ones(4, dtype=torch.float8_e4m3fn), torch.ones(4), 0.5)
