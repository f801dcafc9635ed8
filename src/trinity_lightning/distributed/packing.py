"""Sign bits packed 8 to a byte, and a majority vote computed on the packed bytes.

The 1-bit sign rule
-------------------
A sign costs exactly one bit: bit 1 means ``+1`` and bit 0 means ``-1``. Bit ``k`` of byte ``j`` holds
coordinate ``8 * j + k`` (little-endian bit order). Two cases have no natural one-bit answer:

* an exact zero (for example a parameter that received no gradient), and
* a tie in the vote (an even number of voters split half and half).

Both are resolved by the *dither bit* ``(i + t) mod 2`` of coordinate ``i`` at step ``t``, where ``i`` is the
coordinate's index inside its own tensor (parameter): zeros and ties move odd and even coordinates in opposite
directions and flip direction every step, so a coordinate with a zero gradient (or a permanently split vote)
oscillates by one learning rate and returns to where it was every two steps instead of drifting. (The reference
signSGD code maps ``sign(0) = 0``, which needs a second bit.) Indexing inside each parameter, not inside a DDP
bucket, keeps the rule independent of how DDP groups parameters into buckets (it regroups them after the first
step and again after a resume). For one tensor the dither bit of coordinate ``8 * j + k`` is ``(k + t) mod 2``
(one constant byte per step); for a bucket of several parameters :func:`dither_mask` gives the bits.

A NaN's bit is unspecified (the CPU packer gives it the dither bit, the accelerator's comparison-free packer reads
its sign bit): callers must check for non-finite values first (the DDP hook does, and makes that worker abstain).
"""

from __future__ import annotations

import bisect
import weakref

import numpy as np
import torch

__all__ = [
    "count_bits",
    "dither_byte",
    "dither_mask",
    "majority_vote_packed",
    "momentum_pack_signs",
    "pack_finite_signs",
    "pack_signs",
    "packed_size",
    "unpack_signs",
    "vote_words",
]

# (b * _MAGIC) >> 56 gathers the lowest bit of each of the 8 bytes of b into one byte (bit k <- byte k); the
# partial products never overlap, so there are no carries. One multiply packs 8 signs: ~10x faster than a
# weighted sum over a (n/8, 8) view.
_MAGIC = 0x0102040810204080
_LUTS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
_SHIFTS: dict[torch.device, torch.Tensor] = {}  # bit positions 0-7 per device (:func:`_unpack_shifts`)


def packed_size(numel: int) -> int:
    """Bytes needed for ``numel`` sign bits.

    Example:
        >>> packed_size(17)
        3
    """
    return (numel + 7) // 8


def dither_byte(step: int) -> int:
    """The byte of dither bits ``(k + step) mod 2`` for bit positions ``k = 0..7``.

    Example:
        >>> hex(dither_byte(0)), hex(dither_byte(1))
        ('0xaa', '0x55')
    """
    return 0xAA if step % 2 == 0 else 0x55


def dither_mask(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Packed dither bits at step 0 for tensors of ``lengths`` laid end to end (bit = index inside its tensor
    is odd); at odd steps use its complement.

    Example:
        >>> dither_mask([3, 5]).tolist()  # indices 0 1 2 | 0 1 2 3 4 -> bits 0 1 0 0 1 0 1 0
        [82]
    """
    if any(n < 0 for n in lengths):
        raise ValueError(f"lengths: expected non-negative sizes, got {lengths}")
    total = sum(lengths)
    padded = ((packed_size(total) + 7) // 8) * 64
    bits = torch.zeros(padded, dtype=torch.bool, device=device)
    offset = 0
    for n in lengths:
        bits[offset + 1 : offset + n : 2] = True
        offset += n
    return _pack_bool(bits)[: packed_size(total)]


def _dither(step: int, dither: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | int:
    """The dither bytes (or one byte) for ``step``: a mask, its complement, or the per-tensor constant."""
    if dither is None:
        return (
            dither_byte(step)
            if like.dtype == torch.uint8
            else int.from_bytes(bytes([dither_byte(step)] * 8), "little", signed=True)
        )
    if dither.dtype != torch.uint8 or dither.numel() * (like.element_size()) < like.numel() * like.element_size():
        raise ValueError(
            f"dither: expected a uint8 mask covering {like.numel() * like.element_size()} bytes, got "
            f"{dither.numel()} of {dither.dtype}"
        )
    mask = dither.reshape(-1)
    if like.dtype == torch.int64:
        padded = torch.zeros(like.numel() * 8, dtype=torch.uint8, device=like.device)
        padded[: mask.numel()] = mask[: like.numel() * 8]
        mask = padded.view(torch.int64)
    else:
        mask = mask[: like.numel()]
    return mask if step % 2 == 0 else torch.bitwise_not(mask)


def _pack_bool(bits: torch.Tensor) -> torch.Tensor:
    """Pack a 1-D bool tensor whose length is a multiple of 64 (consumed as scratch) into uint8."""
    words = bits.view(torch.uint8).view(torch.int64)
    words.mul_(_MAGIC).bitwise_right_shift_(56)
    return words.to(torch.uint8)


_CHUNK = 1 << 16  # values per pass on the CPU: the chunk stays in L2 between the update and the comparisons
_BLOCK = 1 << 18  # values whose sign bytes the rule path gathers into bits together (on the CPU, in tests)
_DEVICE_CHUNK = 1 << 22  # on an accelerator: few large kernels
# (b & 0x8080...) * _GATHER >> 56 moves the top bit of byte k of b to bit k: bit 8j+7 times 2^(49-7k) lands on bit
# 56 + k + 8(j-k), so no two partial products share a bit (no carries) and only j = k reaches the top byte.
_TOP_BITS = -0x7F7F7F7F7F7F7F80  # 0x8080808080808080
_GATHER = sum(1 << (49 - 7 * k) for k in range(8))
_SIGNED = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_ALTERNATING: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
_PHASES: dict[int, tuple[weakref.ref[torch.Tensor], int, int, list[tuple[int, int]]]] = {}


def _check_out(out: torch.Tensor | None, nbytes: int, device: torch.device) -> torch.Tensor:
    if out is None:
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    if out.dtype != torch.uint8 or out.numel() < nbytes:
        raise ValueError(
            f"out: expected a uint8 tensor of at least {nbytes} elements, got {out.dtype} with {out.numel()}"
        )
    return out.view(-1)[:nbytes]


def _alternating(dtype: torch.dtype, device: torch.device, size: int) -> torch.Tensor:
    """``-1, +1, -1, ...`` of ``size`` values: ``2 d - 1`` for the dither bit ``d = index mod 2`` (cached)."""
    key = (dtype, device)
    alt = _ALTERNATING.get(key)
    if alt is None or alt.numel() < size:
        alt = torch.ones(max(size, _CHUNK), dtype=dtype, device=device)
        alt[0::2] = -1
        _ALTERNATING[key] = alt
    return alt[:size]


def _odd_phase_ranges(dither: torch.Tensor, n: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of the ``n`` coordinates whose dither bit is *not* ``index mod 2`` at step 0 (the
    tensors of a :func:`dither_mask` that start at an odd offset), sorted; cached per mask tensor and version."""
    hit = _PHASES.get(id(dither))
    if hit is not None and hit[0]() is dither and hit[1:3] == (dither._version, n):
        return hit[3]
    nbytes = packed_size(n)
    # per bit: mask bit xor (index mod 2), i.e. 1 where the dither bit is flipped; bytes all 0, all 1 or mixed
    phase = dither.reshape(-1)[:nbytes].to(device="cpu", dtype=torch.int16).bitwise_xor_(0xAA)
    kind = torch.where(phase == 0, 0, torch.where(phase == 0xFF, 1, 2))
    starts = [0, *(torch.nonzero(kind[1:] != kind[:-1]).flatten() + 1).tolist()]
    ranges: list[tuple[int, int]] = []

    def add(start: int, end: int) -> None:
        end = min(end, n)
        if start >= end:
            return
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))

    for first, last in zip(starts, [*starts[1:], nbytes], strict=True):
        if not first < last:
            continue
        what = int(kind[first])
        if what == 1:
            add(8 * first, 8 * last)
        elif what == 2:
            for index in range(first, last):
                byte = int(phase[index])
                for bit in range(8):
                    if (byte >> bit) & 1:
                        add(8 * index + bit, 8 * index + bit + 1)
    if len(_PHASES) > 256:  # masks normally live as long as their DDP bucket: drop the dead ones
        for key in [k for k, v in _PHASES.items() if v[0]() is None]:
            del _PHASES[key]
    _PHASES[id(dither)] = (weakref.ref(dither), dither._version, n, ranges)
    return ranges


def _pieces(start: int, size: int, odd: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """Split ``[start, start + size)`` at the ``odd`` ranges: ``(begin, end, flipped)`` relative to ``start``."""
    if not odd:
        return [(0, size, False)]
    pieces = []
    pos, end = start, start + size
    for first, last in odd[max(0, bisect.bisect_right(odd, (start, start)) - 1) :]:
        if last <= pos:
            continue
        if first >= end:
            break
        if first > pos:
            pieces.append((pos - start, first - start, False))
        begin, pos = max(first, pos), min(last, end)
        pieces.append((begin - start, pos - start, True))
    if pos < end:
        pieces.append((pos - start, size, False))
    return pieces


def _pack_cpu(
    flat: torch.Tensor,
    result: torch.Tensor,
    step: int,
    dither: torch.Tensor | None,
    grad: torch.Tensor | None = None,
    weight: float = 0.0,
    finite: list[bool] | None = None,
) -> torch.Tensor:
    """The CPU packer: :func:`_pack_chunks`'s contract with two comparisons per value and numpy's ``packbits``
    (vectorised loops), chunk by chunk, so the momentum update (``flat.lerp_(grad, weight)``), both comparisons and
    the finiteness proof read each chunk while it is in cache (one pass over memory).

    ``x > 0`` is packed straight into ``result`` and ``x < 0`` into a scratch; a value in neither set is a zero of
    either sign (or a NaN) and gets the dither bit, merged in one pass over the packed bytes:
    ``result |= ~(positive | negative) & dither`` (bfloat16 chunks are compared as float32, exactly). ``finite``,
    if given, gets one entry per chunk: True where the largest magnitude's top byte does not have the 7 bits under
    the sign all set (float32 and bfloat16: below ``2^127``; float16: below the infinity), the accelerator path's
    bound, read from the bits viewed as integers: a proof that no value is infinite or NaN.
    """
    n = flat.numel()
    width = flat.element_size()
    dither_bits = _dither(step, None if dither is None else dither.reshape(-1), result)  # validates the mask first
    bits = flat.detach().view(_SIGNED[width])
    ints = bits.numpy()
    uints = ints.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[width])
    sign = 1 << (8 * width - 1)  # the bits of -0 viewed as unsigned
    bound = (0x7C if flat.dtype == torch.float16 else 0x7F) << (8 * width - 8)
    chunk = max(64, min(_CHUNK, -(-n // 64) * 64))
    widened = torch.empty(chunk) if flat.dtype == torch.bfloat16 else None
    values = flat.detach().numpy() if widened is None else widened.numpy()
    positive = result.numpy()
    negative_bits = torch.empty(packed_size(n), dtype=torch.uint8)
    negative = negative_bits.numpy()
    scratch = np.empty(chunk, dtype=np.bool_)
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        if grad is not None:
            flat[start:end].lerp_(grad[start:end], weight)
        if widened is None:
            part = values[start:end]
        else:
            part = values[: end - start]
            widened[: end - start].copy_(flat[start:end])
        mask = scratch[: end - start]
        first, last = start // 8, packed_size(end)
        positive[first:last] = np.packbits(np.greater(part, 0, out=mask), bitorder="little")
        negative[first:last] = np.packbits(np.less(part, 0, out=mask), bitorder="little")
        if finite is not None:
            largest = int(np.maximum.reduce(ints[start:end]))  # over the positive values' bits
            largest_negative = int(np.maximum.reduce(uints[start:end]))  # over the negative values' bits
            finite.append(largest < bound and largest_negative < sign + bound)
    zeros = negative_bits.bitwise_or_(result).bitwise_not_().bitwise_and_(dither_bits)  # zeros (and NaNs)
    result.bitwise_or_(zeros)
    if n % 8:
        result[-1:].bitwise_and_((1 << (n % 8)) - 1)  # padding bits stay 0
    return result


def _pack_chunks(
    flat: torch.Tensor,
    result: torch.Tensor,
    step: int,
    dither: torch.Tensor | None,
    grad: torch.Tensor | None = None,
    weight: float = 0.0,
    finite: list[bool] | None = None,
) -> torch.Tensor:
    """Pack the signs of ``flat`` into ``result``; with ``grad``, first ``flat.lerp_(grad, weight)`` on the same
    chunk, so the momentum update and the packing share one pass over memory. On the CPU :func:`_pack_cpu`
    (comparisons and numpy's ``packbits``), on an accelerator :func:`_pack_rule` (no comparison, no host read).
    ``finite``, if given, gets one entry per chunk or block: True where no value can be infinite or NaN (always
    False on an accelerator, which is never read back)."""
    if flat.numel() == 0:
        return result
    if flat.device.type == "cpu":
        return _pack_cpu(flat, result, step, dither, grad, weight, finite)
    if finite is not None:
        finite.append(False)  # not examined (no host read on an accelerator)
    return _pack_rule(flat, result, step, dither, grad, weight)


def _pack_rule(
    flat: torch.Tensor,
    result: torch.Tensor,
    step: int,
    dither: torch.Tensor | None,
    grad: torch.Tensor | None = None,
    weight: float = 0.0,
) -> torch.Tensor:
    """The accelerator packer (it runs on the CPU too, for tests): few large kernels, no comparison, no host read.

    A float compare into bools costs several arithmetic passes in torch. With ``s = 2 d - 1`` for the dither bit
    ``d``, ``q = s * x + 0`` has the sign bit ``sign(x) xor (s < 0)`` for ``x != 0`` and is ``+0`` for ``x = +-0``
    (IEEE: ``-0 + 0 = +0``), so ``signbit(q) xor d`` is 1 for ``x > 0``, 0 for ``x < 0`` and ``d`` for a zero: the
    rule of the module docs. The sign bits are read as the top byte of each value (one shift), gathered 8 to a byte
    with one multiply per 64-bit word, and xor-ed with the packed dither bits.
    """
    n = flat.numel()
    signed = _SIGNED[flat.element_size()]
    on_cpu = flat.device.type == "cpu"
    chunk = min(_CHUNK if on_cpu else _DEVICE_CHUNK, -(-n // 64) * 64)
    block = min(_BLOCK if on_cpu else _DEVICE_CHUNK, -(-n // chunk) * chunk)  # top bytes gathered per block
    alt = _alternating(flat.dtype, flat.device, chunk)
    zero = torch.zeros((), dtype=flat.dtype, device=flat.device)
    scratch = torch.empty(chunk, dtype=flat.dtype, device=flat.device)
    top = torch.empty(block, dtype=torch.uint8, device=flat.device)
    words = top.view(torch.int64)
    shift = 8 * flat.element_size() - 8
    mask = _dither(step, None if dither is None else dither.reshape(-1), result)  # validates the mask first
    odd = [] if dither is None else _odd_phase_ranges(dither, n)
    sign = 1 if step % 2 == 0 else -1
    for first_value in range(0, n, block):
        block_size = min(block, n - first_value)
        count = packed_size(block_size)
        first_byte = first_value // 8
        for start in range(first_value, first_value + block_size, chunk):
            size = min(chunk, n - start)
            part = flat[start : start + size]
            if grad is not None:
                part.lerp_(grad[start : start + size], weight)
            q = scratch[:size]
            for begin, end, flipped in _pieces(start, size, odd):
                torch.addcmul(zero, part[begin:end], alt[begin:end], value=-sign if flipped else sign, out=q[begin:end])
            offset = start - first_value
            # the byte holding the sign bit (in place, then narrowed: a shift into uint8 is ~3x slower)
            top[offset : offset + size].copy_(q.view(signed).bitwise_right_shift_(shift))
        gathered = words[:count].bitwise_and_(_TOP_BITS).mul_(_GATHER).bitwise_right_shift_(56)
        result[first_byte : first_byte + count].copy_(gathered)  # stale bytes reach only padding bits
    result.bitwise_xor_(mask)
    if n % 8:
        result[-1:].bitwise_and_((1 << (n % 8)) - 1)  # padding bits stay 0
    return result


def pack_signs(
    values: torch.Tensor, step: int = 0, *, out: torch.Tensor | None = None, dither: torch.Tensor | None = None
) -> torch.Tensor:
    """Pack the signs of ``values`` (flattened) into ``packed_size(values.numel())`` bytes.

    Bit 1 means positive, bit 0 negative; an exact zero (``+0`` or ``-0``) gets the dither bit of ``step`` (see the
    module docs). On the CPU, per cache-sized chunk, numpy's vectorised ``x > 0`` and ``x < 0`` are packed 8 to a
    byte by ``packbits`` and the dither bits are merged where neither holds (about 2.5x less CPU than the
    comparison-free packer there). On an accelerator no comparison: the bit is the sign bit of ``s * x + 0``
    (``s = 2 d - 1`` for the dither bit ``d``) xor ``d``, read as the top byte of each value and gathered 8 to a
    byte by one multiply per 64-bit word. Both give the same bits.

    Args:
        values: a floating tensor; a NaN's bit is unspecified, so check ``isfinite`` first.
        step: the step counter that selects the dither bit for zeros.
        out: optional uint8 tensor of at least ``packed_size(values.numel())`` elements to write into.
        dither: :func:`dither_mask` of the tensors ``values`` concatenates (default: one tensor).

    Returns:
        A 1-D uint8 tensor (``out[:nbytes]`` when ``out`` is given).

    Example:
        >>> pack_signs(torch.tensor([1.0, -2.0, 3.0, 0.0, 0.0, -1.0, 1.0, 1.0, -5.0]), step=0).tolist()
        [205, 0]
    """
    return pack_finite_signs(values, step, out=out, dither=dither)[0]


def pack_finite_signs(
    values: torch.Tensor, step: int = 0, *, out: torch.Tensor | None = None, dither: torch.Tensor | None = None
) -> tuple[torch.Tensor, bool]:
    """:func:`pack_signs`, and whether the pass proved every value finite (no separate finiteness pass).

    ``True`` means no value is infinite or NaN (on the CPU the chunk's largest magnitudes, read from the bits as
    integers in the packing pass, prove it). ``False`` means some may be (a float32 at or above ``2^127`` gives
    ``False`` too, and so does every input on an accelerator, which is never read back): check exactly then, for
    example with ``torch.isfinite(values).all()``.

    Example:
        >>> pack_finite_signs(torch.tensor([1.0, -2.0]))
        (tensor([1], dtype=torch.uint8), True)
        >>> pack_finite_signs(torch.tensor([1.0, float("inf")]))[1]
        False
    """
    if not values.is_floating_point():
        raise TypeError(f"values: expected a floating tensor, got dtype {values.dtype}")
    flat = values.reshape(-1).resolve_neg()  # a lazily negated view: its values, not its storage
    if flat.element_size() not in _SIGNED:  # 8-bit floats: their signs are read from float32
        flat = flat.float()
    blocks: list[bool] = []
    bits = _pack_chunks(flat, _check_out(out, packed_size(flat.numel()), flat.device), step, dither, finite=blocks)
    return bits, all(blocks)


def momentum_pack_signs(
    momentum: torch.Tensor,
    grad: torch.Tensor,
    beta: float,
    step: int = 0,
    *,
    out: torch.Tensor | None = None,
    dither: torch.Tensor | None = None,
) -> torch.Tensor:
    """``momentum <- beta * momentum + (1 - beta) * grad`` and :func:`pack_signs` of it, fused in one pass.

    Both run on cache-sized chunks, so the updated momentum is packed before it leaves the cache (one read of
    ``grad``, one read and one write of ``momentum``, no second pass over either).

    Example:
        >>> m = torch.tensor([1.0, -1.0, 0.0])
        >>> momentum_pack_signs(m, torch.tensor([-3.0, -1.0, 2.0]), 0.5).tolist(), m.tolist()
        ([4], [-1.0, -1.0, 1.0])
    """
    if not (momentum.is_floating_point() and momentum.is_contiguous() and momentum.element_size() in _SIGNED):
        raise TypeError(f"momentum: expected a contiguous 16/32/64-bit floating tensor, got {momentum.dtype}")
    if grad.numel() != momentum.numel():
        raise ValueError(f"grad: expected {momentum.numel()} elements like momentum, got {grad.numel()}")
    flat = momentum.view(-1)
    result = _check_out(out, packed_size(flat.numel()), flat.device)
    return _pack_chunks(flat, result, step, dither, grad.reshape(-1), 1.0 - beta)


def _lut(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (dtype, device)
    table = _LUTS.get(key)
    if table is None:
        codes = torch.arange(256).unsqueeze(1)
        bits = codes.bitwise_right_shift(torch.arange(8)).bitwise_and(1)
        table = (bits * 2 - 1).to(dtype=dtype, device=device).contiguous()
        _LUTS[key] = table
    return table


def _unpack_shifts(codes: torch.Tensor, out: torch.Tensor, scale: float | torch.Tensor) -> None:
    """``out[i, j] = scale * (+1 if bit j of codes[i] else -1)`` by shifts and masks (the accelerator path).

    On a GPU the 256 x 8 table lookup is a gather that reached only ~50 GB/s (1.9 of the hook's 2.5 ms of GPU
    time for 25M values on an H200, ``torch.profiler``); four elementwise passes over int32 bits run at memory
    speed. On the CPU the table lookup stays (measured faster there).
    """
    shifts = _SHIFTS.get(codes.device)
    if shifts is None:
        shifts = _SHIFTS[codes.device] = torch.arange(8, dtype=torch.int32, device=codes.device)
    bits = codes.unsqueeze(1).bitwise_right_shift(shifts)
    bits.bitwise_and_(1)  # 0 / 1
    if isinstance(scale, torch.Tensor):
        torch.mul(bits, 2 * scale.to(out.dtype), out=out)
        out.sub_(scale.to(out.dtype))
    else:
        torch.mul(bits, 2.0 * scale, out=out)
        out.sub_(scale)


def unpack_signs(
    packed: torch.Tensor,
    numel: int,
    *,
    out: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Expand packed sign bits to ``scale * (+1 | -1)`` values, written straight into ``out``.

    One table lookup per byte (a 256 x 8 table): the bits are never expanded to an intermediate tensor.

    Args:
        packed: uint8 tensor of at least ``packed_size(numel)`` bytes.
        numel: how many signs to expand.
        out: optional 1-D floating tensor of ``numel`` elements (for example a DDP bucket buffer).
        dtype: dtype of the result when ``out`` is not given.
        scale: magnitude of the result (a float, or a 0-dim tensor on the packed bits' device).

    Example:
        >>> unpack_signs(torch.tensor([205, 0], dtype=torch.uint8), 9).tolist()
        [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0]
    """
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed: expected a uint8 tensor, got {packed.dtype}")
    if packed.numel() < packed_size(numel):
        raise ValueError(f"packed: {packed.numel()} bytes hold fewer than numel={numel} signs")
    if out is None:
        out = torch.empty(numel, dtype=dtype, device=packed.device)
    elif out.numel() != numel or not out.is_contiguous():
        raise ValueError(f"out: expected a contiguous tensor of {numel} elements, got shape {tuple(out.shape)}")
    flat_out = out.view(-1)
    whole = numel // 8
    codes = packed.reshape(-1)[: packed_size(numel)].int()  # int32 indices: a quarter of int64's conversion
    if whole and flat_out.device.type != "cpu":
        _unpack_shifts(codes[:whole], flat_out[: whole * 8].view(whole, 8), scale)
        whole_done = True
    else:
        whole_done = False
    table = _lut(flat_out.dtype, flat_out.device)
    if isinstance(scale, torch.Tensor) or scale != 1.0:  # a tensor scale stays on the device (no host read)
        table = table * scale
    if whole and not whole_done:
        torch.index_select(table, 0, codes[:whole], out=flat_out[: whole * 8].view(whole, 8))
    tail = numel - whole * 8
    if tail:
        flat_out[whole * 8 :] = table[codes[whole], :tail]
    return out


def _ripple_add(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Bit-sliced sum of two batches of counters (planes least significant first): full adders on whole words."""
    out: list[torch.Tensor] = []
    carry: torch.Tensor | None = None
    for x, y in zip(a, b, strict=True):
        half = x ^ y
        if carry is None:
            out.append(half)
            carry = x & y
        else:
            out.append(half ^ carry)
            carry = (x & y) | (half & carry)
    out.append(carry)  # type: ignore[arg-type]
    return out


def count_bits(words: torch.Tensor) -> list[torch.Tensor]:
    """Per bit position, how many of the ``W`` rows of ``words`` have it set, as bit planes (least significant first).

    A tree of bit-sliced adders: level ``l`` adds pairs of ``l``-plane counters for all pairs at once, so the Python
    work is ``O(log^2 W)`` tensor operations whatever ``W``, and the word operations total ``O(W)`` per column.

    Example:
        >>> planes = count_bits(torch.tensor([[0b011], [0b110], [0b010]]))
        >>> [int(p[0]) for p in planes]  # counts 1, 3, 1 at bits 0, 1, 2: low plane 0b111, high plane 0b010
        [7, 2]
    """
    if words.dim() != 2 or words.shape[0] < 1:
        raise ValueError(f"words: expected a (voters, words) tensor with at least one voter, got {tuple(words.shape)}")
    planes = [words]
    while planes[0].shape[0] > 1:
        if planes[0].shape[0] % 2:
            planes = [torch.cat([p, torch.zeros_like(p[:1])]) for p in planes]
        planes = _ripple_add([p[0::2] for p in planes], [p[1::2] for p in planes])
    top = words.shape[0].bit_length()
    return [p[0] for p in planes[:top]]


def vote_words(
    words: torch.Tensor,
    step: int = 0,
    *,
    dither: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Majority vote of ``W`` rows of packed signs viewed as 64-bit words, without leaving the device.

    Args:
        words: ``(W, m)`` int64 tensor, one row of packed signs per voter.
        step: the step counter (the dither bit for ties).
        dither: :func:`dither_mask` bytes of these ``8 m`` bytes (default: one tensor).
        valid: optional ``(W,)`` bool tensor; rows where it is false abstain. The number of voters stays on the
            device (the comparison with half of it is bit-sliced too), so nothing is read back to the host.

    Returns:
        ``(m,)`` int64 words: bit 1 where more than half of the valid voters sent 1, the dither bit on a tie,
        0 where no voter is valid.

    Example:
        >>> w = torch.tensor([[0b0111], [0b0011], [0b0001], [-1]])
        >>> int(vote_words(w, valid=torch.tensor([True, True, True, False]))[0])  # 3 voters: bits 0 and 1
        3
    """
    if words.dim() != 2 or words.dtype != torch.int64:
        raise ValueError(f"words: expected a 2-D int64 tensor (voters, words), got {words.dtype} {tuple(words.shape)}")
    voters = words.shape[0]
    if valid is None:
        if voters == 1:
            return words[0].clone()
        planes = count_bits(words)
        half: torch.Tensor | int = voters // 2
        tie: torch.Tensor | int = -1 if voters % 2 == 0 else 0
    else:
        valid = valid.reshape(-1).to(device=words.device, dtype=torch.bool)
        planes = count_bits(words & valid.to(torch.int64).neg().unsqueeze(1))
        k = valid.sum()
        half = torch.div(k, 2, rounding_mode="floor")
        tie = ((k % 2 == 0) & (k > 0)).to(torch.int64).neg()
    # count > half, most significant plane first; equal -> tie (dither bit) when the count of voters is even
    greater = torch.zeros_like(planes[0])
    equal = torch.full_like(planes[0], -1)
    for j in reversed(range(len(planes))):
        plane = planes[j]
        if isinstance(half, int):
            if (half >> j) & 1:
                equal.bitwise_and_(plane)
            else:
                greater.bitwise_or_(equal & plane)
                equal.bitwise_and_(~plane)
        else:
            bit = torch.bitwise_right_shift(half, j).bitwise_and_(1).neg_()  # 0 or -1, on the device
            greater.bitwise_or_(equal & plane & ~bit)
            equal.bitwise_and_(~(plane ^ bit))
    if isinstance(tie, int):
        if tie:
            greater.bitwise_or_(equal.bitwise_and_(_dither(step, dither, greater)))
    else:
        greater.bitwise_or_(equal.bitwise_and_(_dither(step, dither, greater)).bitwise_and_(tie))
    return greater


def majority_vote_packed(
    votes: torch.Tensor, step: int = 0, *, dither: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Majority vote over packed sign bits, computed with bitwise logic on the packed bytes.

    The bytes are viewed as 64-bit words and every bit position keeps a binary counter spread over
    ``ceil(log2(k + 1))`` bit planes, summed by a tree of bit-sliced full adders (:func:`count_bits`); one
    bit-sliced comparison with ``k // 2`` yields the majority. Nothing is unpacked.

    Args:
        votes: uint8 tensor of shape ``(k, nbytes)``, one row of packed signs per voter (``k >= 1``).
        step: the step counter; with an even ``k`` a tie resolves to the dither bit of this step.
        dither: :func:`dither_mask` bytes of these ``nbytes`` (default: one tensor, see :func:`dither_byte`).
        valid: optional ``(k,)`` bool tensor of the voters that take part (the others abstain).

    Returns:
        uint8 tensor of shape ``(nbytes,)``: bit 1 where more than half of the voters sent 1.

    Example:
        >>> a = pack_signs(torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
        >>> b = pack_signs(torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0]))
        >>> c = pack_signs(torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0]))
        >>> unpack_signs(majority_vote_packed(torch.stack([a, b, c])), 8).tolist()
        [1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
    """
    if votes.dim() != 2 or votes.dtype != torch.uint8:
        raise ValueError(
            f"votes: expected a 2-D uint8 tensor (voters, bytes), got {votes.dtype} of shape {tuple(votes.shape)}"
        )
    k, nbytes = votes.shape
    if k < 1:
        raise ValueError("votes: need at least one voter")
    if k == 1 and valid is None:
        return votes[0].clone()
    if nbytes % 8:
        padded = torch.zeros(k, nbytes + 8 - nbytes % 8, dtype=torch.uint8, device=votes.device)
        padded[:, :nbytes] = votes
        return majority_vote_packed(padded, step, dither=dither, valid=valid)[:nbytes]
    words = votes.contiguous().view(torch.int64)
    return vote_words(words, step, dither=dither, valid=valid).view(torch.uint8)
