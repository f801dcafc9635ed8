"""Bit packing round trips and the bit-sliced majority vote against a plain reference (in one process)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trinity_lightning.distributed.packing import (
    dither_byte,
    dither_mask,
    majority_vote_packed,
    pack_signs,
    packed_size,
    unpack_signs,
)


def reference_signs(x: torch.Tensor, step: int, index: torch.Tensor | None = None) -> torch.Tensor:
    index = torch.arange(x.numel()) if index is None else index
    dither = torch.where((index + step) % 2 == 1, 1.0, -1.0)
    return torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, dither))


def reference_vote(signs: list[torch.Tensor], step: int, index: torch.Tensor | None = None) -> torch.Tensor:
    total = torch.stack(signs).sum(0)
    return reference_signs(total, step, index)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 63, 64, 65, 1000, (1 << 19) + 5, 3 << 19])
@pytest.mark.parametrize("step", [0, 1])
def test_pack_unpack_round_trip_with_zero_rule(n, step):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    x[::5] = 0.0
    packed = pack_signs(x, step)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(n) == (n + 7) // 8
    assert torch.equal(unpack_signs(packed, n), reference_signs(x, step))
    if n % 8:
        assert int(packed[-1]) >> (n % 8) == 0  # padding bits stay zero


@settings(max_examples=40, deadline=None)
@given(voters=st.integers(1, 9), n=st.integers(1, 300), step=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_packed_vote_equals_reference_majority(voters, n, step, seed):
    g = torch.Generator().manual_seed(seed)
    values = [torch.randn(n, generator=g) * (torch.rand(n, generator=g) > 0.1) for _ in range(voters)]
    packed = torch.stack([pack_signs(v, step) for v in values])
    voted = unpack_signs(majority_vote_packed(packed, step), n)
    assert torch.equal(voted, reference_vote([reference_signs(v, step) for v in values], step))


def test_even_vote_ties_follow_the_dither_bit_and_alternate():
    a = pack_signs(torch.ones(16))
    b = pack_signs(-torch.ones(16))
    for step in (0, 1):
        voted = unpack_signs(majority_vote_packed(torch.stack([a, b]), step), 16)
        expected = torch.tensor([1.0 if (i + step) % 2 else -1.0 for i in range(16)])
        assert torch.equal(voted, expected)
    two_steps = sum(unpack_signs(majority_vote_packed(torch.stack([a, b]), s), 16) for s in (0, 1))
    assert torch.equal(two_steps, torch.zeros(16))  # no drift over two steps
    assert (dither_byte(0), dither_byte(1)) == (0xAA, 0x55)


def test_dither_mask_indexes_inside_each_tensor():
    lengths = [3, 6, 1, 9]
    index = torch.cat([torch.arange(n) for n in lengths])
    x = torch.zeros(sum(lengths))
    mask = dither_mask(lengths)
    for step in (0, 1):
        assert torch.equal(unpack_signs(pack_signs(x, step, dither=mask), x.numel()), reference_signs(x, step, index))
        votes = torch.stack([pack_signs(torch.ones(19)), pack_signs(-torch.ones(19))])
        voted = unpack_signs(majority_vote_packed(votes, step, dither=mask), 19)
        assert torch.equal(voted, reference_signs(x, step, index))


def test_unpack_writes_into_a_buffer_with_scale_and_validates():
    out = torch.empty(10)
    packed = pack_signs(torch.tensor([1.0, -1.0] * 5))
    assert unpack_signs(packed, 10, out=out, scale=0.5) is out
    assert out.tolist() == [0.5, -0.5] * 5
    with pytest.raises(ValueError, match="out"):
        unpack_signs(packed, 10, out=torch.empty(9))
    with pytest.raises(ValueError, match="packed"):
        unpack_signs(packed, 30)
    with pytest.raises(TypeError, match="uint8"):
        unpack_signs(packed.float(), 10)
    with pytest.raises(TypeError, match="floating"):
        pack_signs(torch.arange(4))
    with pytest.raises(ValueError, match="votes"):
        majority_vote_packed(packed.float())


def test_nan_packs_as_negative_so_callers_must_check():
    assert unpack_signs(pack_signs(torch.tensor([float("nan"), 1.0])), 2).tolist() == [-1.0, 1.0]
