"""The accelerator unpack (shifts and masks) equals the CPU table lookup bit for bit."""

from __future__ import annotations

import pytest
import torch

from trinity_lightning.distributed import packing
from trinity_lightning.distributed.packing import packed_size, unpack_signs


@pytest.mark.parametrize("numel", [8, 9, 64, 1000, 65541])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.5, "tensor", "zero"])
def test_shift_unpack_equals_the_table_lookup(numel: int, dtype: torch.dtype, scale: object) -> None:
    generator = torch.Generator().manual_seed(numel)
    packed = torch.randint(0, 256, (packed_size(numel),), dtype=torch.uint8, generator=generator)
    value: float | torch.Tensor = (
        torch.tensor(0.25) if scale == "tensor" else torch.tensor(0.0) if scale == "zero" else float(scale)  # type: ignore[arg-type]
    )
    expected = unpack_signs(packed, numel, dtype=dtype, scale=value)  # the CPU path: the 256 x 8 table
    whole = numel // 8
    out = torch.full((whole * 8,), 7.0, dtype=dtype)
    packing._unpack_shifts(packed[:whole].int(), out.view(whole, 8), value)
    assert torch.equal(out, expected[: whole * 8])


def test_accelerator_path_is_taken_off_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``unpack_signs`` routes whole bytes through the shift path on any device but the CPU."""
    calls: list[int] = []
    original = packing._unpack_shifts

    def spy(codes: torch.Tensor, out: torch.Tensor, scale: float | torch.Tensor) -> None:
        calls.append(codes.numel())
        original(codes, out, scale)

    monkeypatch.setattr(packing, "_unpack_shifts", spy)
    packed = torch.tensor([205, 3], dtype=torch.uint8)
    assert unpack_signs(packed, 9).tolist() == [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    assert calls == []  # the CPU keeps the table lookup
    if torch.cuda.is_available():
        assert unpack_signs(packed.cuda(), 9).tolist() == [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
        assert calls == [1]
