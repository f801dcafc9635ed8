"""The majority-vote DDP communication hook and its state (local momentum, error feedback, step counter).

Per bucket and step, every worker

1. updates its local momentum ``m <- beta * m + (1 - beta) * g`` and packs the signs of ``m`` 8 to a byte in the
   same pass over memory, chunk by chunk (:func:`~trinity_lightning.distributed.packing.momentum_pack_signs`: on
   the CPU numpy's vectorised ``m > 0`` / ``m < 0`` and ``packbits`` while the chunk is in cache, on an accelerator
   the comparison-free sign-bit packer); without momentum that packing pass also
   proves the bucket finite (:func:`~trinity_lightning.distributed.packing.pack_finite_signs`), with momentum a
   ``sum`` checks it first (an abstaining worker's momentum must stay unchanged); with error feedback it forms
   ``p = m + e`` and keeps ``e <- p - mean|p| * sign(p)``, the mean taken over each parameter (the signs are
   unpacked into the bucket buffer, which the vote overwrites later: no gradient-sized temporary);
2. sends shard ``r`` of its packed bits to rank ``r`` (one ``all_to_all_single``), each shard led by a header
   (valid flag; with error feedback, one float32 scale per parameter of the bucket), written on the device;
3. votes on its own shard with bit-sliced full adders on 64-bit words
   (:func:`~trinity_lightning.distributed.packing.vote_words`): nothing is unpacked, and the number of valid
   voters stays on the device;
4. all-gathers the voted shards (``all_gather_single``) and unpacks them once, straight into the bucket buffer.

A worker therefore sends about ``2 * n / 8`` bytes per step whatever the world size, 1/32 of a ring all-reduce
of fp32. Where the backend lacks ``all_to_all`` (``communication="allgather"``, chosen automatically for
backends other than gloo/nccl/mpi/ucc) every worker all-gathers the full packed bits and votes on all of them.

**Overlap with the backward pass.** The hook returns its future without waiting: bucket ``i``'s
``all_to_all`` is in flight while autograd computes the next buckets' gradients. Its vote and ``all_gather`` are
issued from the hook call of bucket ``i + 1``, and the hook call of bucket ``i + 2`` waits for that
``all_gather``, unpacks it and completes bucket ``i``'s future; the last bucket's call finishes whatever is still
in flight. So every rank issues the same collectives in the same order from its own thread
(``a2a(0), a2a(1), ag(0), a2a(2), ag(1), ...``), and no Python runs on the backend's threads: a completion
callback there needs the GIL, which is what deadlocks PowerSGD's chained futures on gloo with several buckets
and a process group's shutdown that joins those threads while the GIL is held.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from trinity_lightning.distributed.packing import (
    dither_mask,
    momentum_pack_signs,
    pack_finite_signs,
    pack_signs,
    packed_size,
    unpack_signs,
    vote_words,
)

__all__ = ["SignSGDState", "WorkerFailureError", "register_signsgd_hook", "signsgd_hook"]

_FLAG = 8  # header bytes before the scales: [valid flag, 7 pad]; then one float32 per parameter (error feedback)
_ALL_TO_ALL_BACKENDS = {"gloo", "nccl", "mpi", "ucc"}


def _header_size(num_scales: int) -> int:
    """Bytes of a frame's header: the flag word and ``num_scales`` float32 scales, rounded up to 8 bytes."""
    size = _FLAG + 4 * num_scales
    return size + (-size % 8)


def _all_gather_single(output: torch.Tensor, tensor: torch.Tensor, group: dist.ProcessGroup | None) -> Any:
    """``all_gather_single`` (torch >= 2.13) or its older name ``all_gather_into_tensor``."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return gather(output, tensor, group=group, async_op=True)


_LIBRARIES = ("torch", "lightning", "pytorch_lightning", "lightning_fabric", "trinity_lightning.distributed")


def _library_folders() -> tuple[str, ...]:
    folders = []
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            folders.append(os.path.dirname(path) + os.sep)
    return tuple(folders)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes the caller's ``warnings.warn`` point at the user's code.

    The hook runs inside ``loss.backward()`` (torch's autograd engine, Lightning's loops): frames of torch,
    Lightning and this package are skipped, so a warning names the user's ``backward()`` or ``trainer.fit()``
    line, not ``torch/autograd/graph.py``. Where no user frame is on the stack (the hook running on an autograd
    device thread) it returns 1.

    Example:
        >>> user_stacklevel() >= 1
        True
    """
    folders = _library_folders()
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(folders):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level if frame is not None else 1


class WorkerFailureError(RuntimeError):
    """A collective of the majority vote failed or timed out: a worker has probably died."""


class SignSGDState:
    """State of :func:`signsgd_hook`: configuration, step counter, per-worker momentum and error buffers.

    Buffers are kept per parameter (as views into one flat buffer per DDP bucket), so they survive DDP
    rebuilding its buckets, and :meth:`state_dict` keys them by parameter name.

    Args:
        process_group: the group to vote in (default: the world).
        momentum: local momentum ``beta`` of Signum (0 gives signSGD).
        error_feedback: EF-signSGD: keep the residual ``p - mean|p| * sign(p)`` and return
            ``mean_k(mean|p_k|) * vote``, with ``mean|p|`` taken over each parameter tensor (so the update does
            not depend on how DDP buckets the parameters); apply it with plain SGD, not Signum.
        nonfinite: ``"abstain"`` (a worker whose bucket holds NaN/inf leaves that step's vote out, with a
            warning naming the rank) or ``"raise"``.
        communication: ``"alltoall"`` (shards), ``"allgather"`` (full bits, for backends without all_to_all)
            or ``"auto"`` (``alltoall`` on gloo/nccl/mpi/ucc).
        timeout: how long to wait for each collective before raising :class:`WorkerFailureError`.
        flip_signs: fault injection for experiments: this worker sends the negation of its signs.

    Example:
        >>> state = SignSGDState(momentum=0.9)
        >>> state.momentum, state.step
        (0.9, 0)
    """

    def __init__(
        self,
        process_group: dist.ProcessGroup | None = None,
        momentum: float = 0.9,
        error_feedback: bool = False,
        nonfinite: Literal["abstain", "raise"] = "abstain",
        communication: Literal["auto", "alltoall", "allgather"] = "auto",
        timeout: timedelta = timedelta(minutes=10),
        flip_signs: bool = False,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {momentum}")
        if nonfinite not in ("abstain", "raise"):
            raise ValueError(f"nonfinite: expected 'abstain' or 'raise', got {nonfinite!r}")
        if communication not in ("auto", "alltoall", "allgather"):
            raise ValueError(f"communication: expected 'auto', 'alltoall' or 'allgather', got {communication!r}")
        if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
            raise ValueError(f"timeout: expected a positive datetime.timedelta, got {timeout!r}")
        self.process_group = process_group
        self.momentum = float(momentum)
        self.error_feedback = bool(error_feedback)
        self.nonfinite = nonfinite
        self.communication = communication
        self.timeout = timeout
        self.flip_signs = bool(flip_signs)
        self.step = 0
        self._abstained: list[tuple[int, int, int]] = []  # (step, bucket, rank) seen by this worker
        self._unread: list[tuple[int, int, int, torch.Tensor]] = []  # (step, bucket, rank, valid flags) on a GPU
        self._pending: _Vote | None = None  # all_to_all in flight
        self._gathering: _Gather | None = None  # all_gather in flight
        self._frames: dict[tuple[int, str], torch.Tensor] = {}
        self._defer_flags: bool | None = None  # None: keep the valid flags on the device only on a GPU
        self._names: dict[int, str] = {}
        self._params: dict[str, nn.Parameter] = {}
        self._buffers: dict[str, dict[int, torch.Tensor]] = {"momentum": {}, "error": {}}
        self._flat: dict[tuple[str, int], tuple[tuple[int, ...], torch.Tensor]] = {}
        self._dither: dict[int, tuple[tuple[int, ...], torch.Tensor]] = {}
        self._layouts: dict[int, tuple[tuple[int, ...], list[tuple[int, int]]]] = {}

    @property
    def abstained(self) -> list[tuple[int, int, int]]:
        """``(step, bucket, rank)`` of every abstention this worker has seen (read from the device on access)."""
        self._read_flags()
        return self._abstained

    @abstained.setter
    def abstained(self, value: list[tuple[int, int, int]]) -> None:
        self._abstained = list(value)
        self._unread.clear()

    def _read_flags(self) -> None:
        """Turn the valid flags kept on the device into abstentions and warnings (one host read for all)."""
        unread, self._unread = self._unread, []
        for step, index, rank, flags in unread:
            _report_abstentions(self, step, index, rank, flags.tolist(), warn_self=True)

    def _frame(self, index: int, kind: str, size: int, device: torch.device) -> torch.Tensor:
        """A uint8 buffer reused across steps for bucket ``index`` (``kind``: send, received, gathered)."""
        key = (index, kind)
        frame = self._frames.get(key)
        if frame is None or frame.numel() != size or frame.device != device:
            frame = self._frames[key] = torch.zeros(size, dtype=torch.uint8, device=device)
        return frame

    # -- parameters and buffers ------------------------------------------------------------------------------
    def attach(self, module: nn.Module) -> None:
        """Name the parameters of ``module`` so :meth:`state_dict` can key the buffers by name."""
        self._params = dict(module.named_parameters())
        self._names = {id(p): name for name, p in self._params.items()}

    def _segments(self, bucket: dist.GradBucket) -> list[tuple[int, int]]:
        """``(offset, numel)`` of each of the bucket's parameters inside its flat buffer (cached per layout)."""
        params = bucket.parameters()
        signature = tuple(id(p) for p in params)
        cached = self._layouts.get(bucket.index())
        if cached is not None and cached[0] == signature:
            return cached[1]
        grad = bucket.buffer()
        base, size = grad.data_ptr(), grad.element_size()
        segments = [
            ((view.data_ptr() - base) // size, param.numel())
            for param, view in zip(params, bucket.gradients(), strict=True)
        ]
        self._layouts[bucket.index()] = (signature, segments)
        return segments

    def _flat_buffer(self, kind: str, bucket: dist.GradBucket) -> torch.Tensor:
        """The flat ``kind`` buffer aligned with ``bucket``; rebuilt (values kept) when the bucket changes."""
        params = bucket.parameters()
        signature = tuple(id(p) for p in params)
        key = (kind, bucket.index())
        cached = self._flat.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        flat = torch.zeros_like(bucket.buffer())
        store = self._buffers[kind]
        for param, (offset, numel) in zip(params, self._segments(bucket), strict=True):
            view = flat[offset : offset + numel]
            previous = store.get(id(param))
            if previous is not None:
                view.copy_(previous.reshape(-1))
            store[id(param)] = view
        self._flat[key] = (signature, flat)
        return flat

    def _dither_mask(self, bucket: dist.GradBucket, nbytes: int) -> torch.Tensor:
        """Packed dither bits of the bucket's parameters (cached per layout), padded with zeros to ``nbytes``."""
        params = bucket.parameters()
        signature = tuple(id(p) for p in params)
        cached = self._dither.get(bucket.index())
        if cached is not None and cached[0] == signature and cached[1].numel() >= nbytes:
            return cached[1]
        mask = torch.zeros(nbytes, dtype=torch.uint8, device=bucket.buffer().device)
        bits = dither_mask([p.numel() for p in params], device=mask.device)
        mask[: bits.numel()] = bits
        self._dither[bucket.index()] = (signature, mask)
        return mask

    def state_dict(self) -> dict[str, Any]:
        """Step counter and this worker's momentum/error buffers by parameter name (CPU tensors)."""
        if self._buffers["momentum"] or self._buffers["error"]:
            missing = [k for buffers in self._buffers.values() for k in buffers if k not in self._names]
            if missing:
                raise RuntimeError(
                    "SignSGDState.state_dict: parameters are unnamed; call state.attach(module) "
                    "or register the hook with register_signsgd_hook(ddp_model, state)"
                )
        return {
            "step": self.step,
            "momentum": self.momentum,
            "error_feedback": self.error_feedback,
            "buffers": {
                kind: {self._names[k]: v.detach().clone().cpu() for k, v in buffers.items()}
                for kind, buffers in self._buffers.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; buffers are copied into the flat buffers at the next hook call."""
        try:
            step, buffers = int(state["step"]), state["buffers"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"SignSGDState.load_state_dict: expected keys 'step' and 'buffers', got {exc}") from exc
        if any(buffers.get(kind) for kind in buffers) and not self._params:
            raise RuntimeError("SignSGDState.load_state_dict: call state.attach(module) first")
        restored: dict[str, dict[int, torch.Tensor]] = {"momentum": {}, "error": {}}
        for kind, named in buffers.items():
            if kind not in restored:
                raise ValueError(f"SignSGDState.load_state_dict: unknown buffer kind {kind!r}")
            for name, value in named.items():
                param = self._params.get(name)
                if param is None:
                    raise ValueError(f"SignSGDState.load_state_dict: no parameter named {name!r} in the model")
                if value.numel() != param.numel():
                    raise ValueError(
                        f"SignSGDState.load_state_dict: {kind} buffer of {name!r} has {value.numel()} "
                        f"elements, the parameter {param.numel()}"
                    )
                restored[kind][id(param)] = value.to(param.device)
        self.step = step
        self._buffers = restored
        self._flat.clear()
        self._layouts.clear()

    # -- communication ---------------------------------------------------------------------------------------
    def _mode(self) -> str:
        if self.communication != "auto":
            return self.communication
        backend = str(dist.get_backend(self.process_group)).lower()
        return "alltoall" if any(name in backend for name in _ALL_TO_ALL_BACKENDS) else "allgather"

    def _wait(self, work: Any, what: str, bucket: int) -> None:
        try:
            ok = work.wait(self.timeout)
        except Exception as exc:  # gloo raises on a closed peer connection or a timeout
            raise WorkerFailureError(
                f"signSGD majority vote: {what} of bucket {bucket} at step {self.step} failed on rank "
                f"{dist.get_rank(self.process_group)}: a worker has probably died or stalled "
                f"(timeout {self.timeout}). Cause: {exc}"
            ) from exc
        if ok is False:
            raise WorkerFailureError(
                f"signSGD majority vote: {what} of bucket {bucket} at step {self.step} did "
                f"not finish within {self.timeout}: a worker has probably died or stalled"
            )


def _scale_segments(values: torch.Tensor, segments: list[tuple[int, int]], scales: torch.Tensor) -> torch.Tensor:
    """Multiply each parameter's segment of the flat ``values`` by its scale (a device tensor), in place."""
    for i, (offset, numel) in enumerate(segments):
        values[offset : offset + numel].mul_(scales[i])
    return values


def _deferred(state: SignSGDState, grad: torch.Tensor) -> bool:
    """Whether abstentions stay on the device (no host read per bucket): on a GPU, or when a test asks for it."""
    return bool(state._defer_flags if state._defer_flags is not None else grad.is_cuda)


def _report_abstentions(
    state: SignSGDState, step: int, index: int, rank: int, flags: list[int], warn_self: bool = False
) -> None:
    """Record the ranks whose valid flag is 0; rank 0 warns about the others (``warn_self``: this rank too)."""
    for other, flag in enumerate(flags):
        if flag:
            continue
        state._abstained.append((step, index, other))
        if other == rank and warn_self:
            warnings.warn(
                f"signSGD: rank {rank} has non-finite (NaN/inf) gradient values in bucket {index} at step {step}; "
                "it abstained from that step's vote (its momentum was left unchanged)",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        elif other != rank and rank == 0:
            warnings.warn(
                f"signSGD: rank {other} abstained from the vote of bucket {index} at step {step} (non-finite gradient)",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )


def _local_signs(
    state: SignSGDState, bucket: dist.GradBucket, rank: int, dither: torch.Tensor, out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Update momentum / error feedback and pack the signs into ``out``; return the valid flag (a 0-dim device
    tensor) and, with error feedback, the per-parameter scales ``mean|p|`` (a device tensor)."""
    grad = bucket.buffer()
    if _deferred(state, grad) and not state.error_feedback and state.nonfinite == "abstain":
        valid = torch.isfinite(grad.sum())  # stays on the device; the abstention is reported when the flags are read
        if state.momentum > 0:
            momentum = state._flat_buffer("momentum", bucket)
            # an abstaining worker's momentum must stay unchanged: lerp towards itself
            momentum_pack_signs(
                momentum, torch.where(valid, grad, momentum), state.momentum, state.step, out=out, dither=dither
            )
        else:
            pack_signs(grad, state.step, out=out, dither=dither)
        if state.flip_signs:
            out.bitwise_not_()
        return valid, None
    packed = not state.error_feedback and state.momentum == 0
    if packed:  # signSGD: the packing pass proves the bucket finite (or not), no pass of its own
        finite = pack_finite_signs(grad, state.step, out=out, dither=dither)[1]
    else:  # momentum and error feedback change the state: check first (a sum is ~20x cheaper than isfinite().all()
        finite = math.isfinite(float(grad.sum()))  # and is non-finite whenever an element is)
    if not (finite or bool(torch.isfinite(grad).all())):
        message = (
            f"signSGD: rank {rank} has non-finite (NaN/inf) gradient values in bucket {bucket.index()} at "
            f"step {state.step}"
        )
        if state.nonfinite == "raise":
            raise FloatingPointError(message)
        warnings.warn(
            message + "; it abstains from this step's vote (its momentum is left unchanged)",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        return torch.zeros((), dtype=torch.bool, device=grad.device), None
    valid = torch.ones((), dtype=torch.bool, device=grad.device)
    scales = None
    if not state.error_feedback:
        if not packed:
            momentum_pack_signs(
                state._flat_buffer("momentum", bucket), grad, state.momentum, state.step, out=out, dither=dither
            )
    else:
        source = grad
        if state.momentum > 0:
            source = state._flat_buffer("momentum", bucket)
            source.lerp_(grad, 1.0 - state.momentum)  # m = beta * m + (1 - beta) * g in one pass
        error = state._flat_buffer("error", bucket)
        error.add_(source)  # p = m + e, held in the error buffer
        segments = state._segments(bucket)
        # mean|p| per parameter tensor: one pass each, no |p| buffer
        scales = torch.stack(
            [
                torch.linalg.vector_norm(error[offset : offset + numel], 1) / numel if numel else error.new_zeros(())
                for offset, numel in segments
            ]
        )
        bits = pack_signs(error, state.step, out=out, dither=dither)
        # e = p - scale * sign(p), one scale per parameter tensor; the bucket buffer is free until the vote fills
        # it, so the signs are unpacked there (no gradient-sized temporary)
        signs = unpack_signs(bits, error.numel(), out=grad)
        for i, (offset, numel) in enumerate(segments):
            error[offset : offset + numel].addcmul_(signs[offset : offset + numel], scales[i], value=-1)
    if state.flip_signs:
        out.bitwise_not_()
    return valid, scales


@dataclass
class _Vote:
    """One bucket's vote in flight: its first collective, the buffers, and the future the hook returned."""

    index: int
    step: int
    rank: int
    world: int
    alltoall: bool
    deferred: bool
    work: Any
    received: torch.Tensor  # (world, header + shard) frames
    dither: torch.Tensor  # dither bytes of the voted words
    header: int
    shard: int
    grad: torch.Tensor
    segments: list[tuple[int, int]]
    future: torch.futures.Future[torch.Tensor]


def _vote_frames(
    vote: _Vote,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool | torch.Tensor]:
    """Vote over the received frames: the voted bits, the valid flags, the voters' mean scales, any voter valid."""
    rows = vote.received.view(vote.world, -1)
    flags = rows[:, 0]
    valid = flags.bool()
    words = rows[:, vote.header :].view(torch.int64)
    voted = vote_words(words, vote.step, dither=vote.dither, valid=valid).view(torch.uint8)
    scales = None
    if vote.segments:
        sent = rows[:, _FLAG : _FLAG + 4 * len(vote.segments)].contiguous().view(torch.float32)
        sent = torch.where(valid.unsqueeze(1), sent, 0.0)
        scales = sent.sum(0) / valid.sum().clamp_min(1)
    if vote.deferred:
        vote_state_flags = flags.clone()
        return voted, vote_state_flags, scales, valid.any()
    return voted, flags, scales, bool(flags.any())


def _unpack(vote: _Vote, bits: torch.Tensor, scales: torch.Tensor | None, any_valid: bool | torch.Tensor) -> None:
    """Write the voted signs (times the scales with error feedback) straight into the bucket buffer."""
    grad = vote.grad
    if isinstance(any_valid, bool):
        if not any_valid:
            grad.zero_()
            return
        unpack_signs(bits, grad.numel(), out=grad)
    else:  # on the device: every worker abstained -> zeros, without reading the flag back
        unpack_signs(bits, grad.numel(), out=grad, scale=any_valid.to(grad.dtype))
    if scales is not None:
        _scale_segments(grad, vote.segments, scales)


@dataclass
class _Gather:
    """One bucket's voted shards being all-gathered; completed on the hook's thread by :func:`_complete`."""

    vote: _Vote
    work: Any
    gathered: torch.Tensor
    scales: torch.Tensor | None
    any_valid: bool | torch.Tensor


def _vote_and_gather(state: SignSGDState, vote: _Vote) -> _Gather | None:
    """Wait for the vote's first collective and vote. All-to-all: issue the all-gather of the voted shards and
    return it; all-gather mode: unpack into the bucket, complete the hook's future and return None."""
    state._wait(vote.work, "all_to_all" if vote.alltoall else "all_gather", vote.index)
    voted, flags, scales, any_valid = _vote_frames(vote)
    if vote.deferred:
        state._unread.append((vote.step, vote.index, vote.rank, flags))
    else:
        _report_abstentions(state, vote.step, vote.index, vote.rank, flags.tolist())
    if not vote.alltoall:
        _unpack(vote, voted, scales, any_valid)
        vote.future.set_result(vote.grad)
        return None
    gathered = state._frame(vote.index, "gathered", vote.world * vote.shard, vote.grad.device)
    work = _all_gather_single(gathered, voted, state.process_group)
    return _Gather(vote=vote, work=work, gathered=gathered, scales=scales, any_valid=any_valid)


def _complete(state: SignSGDState, gather: _Gather) -> None:
    """Wait for the all-gather, unpack the voted signs into the bucket and complete the hook's future."""
    state._wait(gather.work, "all_gather", gather.vote.index)
    _unpack(gather.vote, gather.gathered, gather.scales, gather.any_valid)
    gather.vote.future.set_result(gather.vote.grad)


def signsgd_hook(state: SignSGDState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: replace the bucket's gradient by the majority vote of the workers' signs.

    The returned gradient is ``+1``/``-1`` per coordinate (with error feedback ``scale * vote``, the scale of
    each parameter being the voters' mean of their ``mean|p|`` over that parameter; all zeros when every worker
    abstained), identical on every rank; apply it with ``Signum(momentum=0)`` or plain
    SGD, i.e. ``x -= lr * vote`` (plus decoupled weight decay).

    The future is returned before the communication finishes (see the module docs): DDP overlaps it with the
    rest of the backward pass and waits for it at the end.

    Example:
        >>> # ddp_model.register_comm_hook(SignSGDState(momentum=0.9), signsgd_hook)
        >>> callable(signsgd_hook)
        True
    """
    group = state.process_group
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    grad = bucket.buffer()
    n = grad.numel()
    nbytes = packed_size(n)
    index = bucket.index()
    alltoall = state._mode() == "alltoall"
    shard = -(-nbytes // world) if alltoall else nbytes
    shard += -shard % 8  # whole 64-bit words for the bitwise vote
    chunks = world if alltoall else 1
    dither = state._dither_mask(bucket, shard * chunks)
    segments = state._segments(bucket) if state.error_feedback else []
    header = _header_size(len(segments))
    bits = state._frame(index, "bits", shard * chunks, grad.device)  # tail past nbytes stays 0
    valid, scales = _local_signs(state, bucket, rank, dither, bits[:nbytes])
    send = state._frame(index, "send", chunks * (header + shard), grad.device).view(chunks, header + shard)
    send[:, header:] = bits.view(chunks, shard)
    send[:, 0] = valid
    if scales is not None:
        send[:, _FLAG : _FLAG + 4 * len(segments)] = scales.to(torch.float32).view(torch.uint8)
    received = state._frame(index, "received", world * (header + shard), grad.device)
    if alltoall:
        work = dist.all_to_all_single(received, send.view(-1), group=group, async_op=True)
    else:
        work = _all_gather_single(received, send.view(-1), group)
    vote = _Vote(
        index=index,
        step=state.step,
        rank=rank,
        world=world,
        alltoall=alltoall,
        deferred=_deferred(state, grad),
        work=work,
        received=received,
        dither=dither[rank * shard : (rank + 1) * shard] if alltoall else dither,
        header=header,
        shard=shard,
        grad=grad,
        segments=segments,
        future=torch.futures.Future(),
    )
    previous, state._pending = state._pending, None
    earlier, state._gathering = state._gathering, None
    if previous is not None:  # the previous bucket's vote and all-gather, issued in bucket order on every rank
        state._gathering = _vote_and_gather(state, previous)
    if earlier is not None:  # the bucket before it: its all-gather has had a whole bucket's backward to finish
        _complete(state, earlier)
    if bucket.is_last():  # finish everything still in flight, in bucket order
        if state._gathering is not None:
            gathering, state._gathering = state._gathering, None
            _complete(state, gathering)
        last = _vote_and_gather(state, vote)
        if last is not None:
            _complete(state, last)
        state.step += 1
    else:
        state._pending = vote
    return vote.future


# DDP compares the annotations with the real objects; ``from __future__ import annotations`` made them strings.
signsgd_hook.__annotations__.update(
    state=SignSGDState, bucket=dist.GradBucket, **{"return": torch.futures.Future[torch.Tensor]}
)


def register_signsgd_hook(
    model: nn.parallel.DistributedDataParallel, state: SignSGDState | None = None, **kwargs: Any
) -> SignSGDState:
    """Attach :func:`signsgd_hook` to a DDP model and return its state (built from ``kwargs`` if not given).

    Example (one process; with several, every rank runs the same code):
        >>> import torch.distributed as dist
        >>> from trinity_lightning.distributed import Signum
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> model = nn.parallel.DistributedDataParallel(nn.Linear(3, 1))
        >>> state = register_signsgd_hook(model, momentum=0.9)  # each worker's momentum lives in `state`
        >>> optimizer = Signum(model.parameters(), lr=0.1, momentum=0.0)  # so the optimizer has none
        >>> model(torch.ones(2, 3)).sum().backward()
        >>> model.module.weight.grad.tolist(), state.step  # the voted signs replace the gradient
        ([[1.0, 1.0, 1.0]], 1)
        >>> sorted(state.state_dict()["buffers"]["momentum"])
        ['bias', 'weight']
        >>> dist.destroy_process_group()
    """
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError(f"model: expected a DistributedDataParallel module, got {type(model).__name__}")
    if state is None:
        state = SignSGDState(**kwargs)
    elif kwargs:
        raise ValueError(f"pass either state or keyword arguments, not both (got {sorted(kwargs)})")
    state.attach(model.module)
    model.register_comm_hook(state, signsgd_hook)
    return state
