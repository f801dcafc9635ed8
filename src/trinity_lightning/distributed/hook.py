"""The majority-vote DDP communication hook and its state (local momentum, error feedback, step counter).

Per bucket and step, every worker

1. updates its local momentum ``m <- beta * m + (1 - beta) * g`` (and, with error feedback, forms
   ``p = m + e`` and keeps ``e <- p - mean|p| * sign(p)``, the mean taken over each parameter tensor);
2. packs the signs 8 to a byte (:func:`~trinity_lightning.distributed.packing.pack_signs`);
3. sends shard ``r`` of its packed bits to rank ``r`` (one ``all_to_all_single``), each shard led by a header
   (valid flag; with error feedback, one float32 scale per parameter of the bucket);
4. votes on its own shard with bitwise logic (:func:`~trinity_lightning.distributed.packing.majority_vote_packed`);
5. all-gathers the voted shards (``all_gather_single``) and unpacks them once into the bucket buffer.

A worker therefore sends about ``2 * n / 8`` bytes per step whatever the world size, 1/32 of a ring all-reduce
of fp32. Where the backend lacks ``all_to_all`` (``communication="allgather"``, chosen automatically for
backends other than gloo/nccl/mpi/ucc) every worker all-gathers the full packed bits and votes on all of them.

The hook waits for its collectives before it returns, so a step issues one chain of collectives in bucket order
on every rank (DDP calls the hook for bucket 0, 1, ... in order): no interleaving across buckets, which is what
made PowerSGD's chained futures hang on gloo with several buckets.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from trinity_lightning.distributed.packing import (
    dither_mask,
    majority_vote_packed,
    pack_signs,
    packed_size,
    unpack_signs,
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
        self.abstained: list[tuple[int, int, int]] = []  # (step, bucket, rank) seen by this worker
        self._names: dict[int, str] = {}
        self._params: dict[str, nn.Parameter] = {}
        self._buffers: dict[str, dict[int, torch.Tensor]] = {"momentum": {}, "error": {}}
        self._flat: dict[tuple[str, int], tuple[tuple[int, ...], torch.Tensor]] = {}
        self._dither: dict[int, tuple[tuple[int, ...], torch.Tensor]] = {}
        self._layouts: dict[int, tuple[tuple[int, ...], list[tuple[int, int]]]] = {}

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


def _scale_segments(values: torch.Tensor, segments: list[tuple[int, int]], scales: list[float]) -> torch.Tensor:
    """Multiply each parameter's segment of the flat ``values`` by its scale, in place."""
    for (offset, numel), scale in zip(segments, scales, strict=True):
        values[offset : offset + numel].mul_(scale)
    return values


def _local_signs(
    state: SignSGDState, bucket: dist.GradBucket, rank: int, dither: torch.Tensor
) -> tuple[torch.Tensor | None, list[float]]:
    """Update momentum / error feedback and pack the signs (``None`` when this worker abstains).

    Also returns the per-parameter error-feedback scales ``mean|p|`` (empty without error feedback).
    """
    grad = bucket.buffer()
    # a sum is ~20x cheaper than isfinite(grad).all() and is non-finite whenever an element is; confirm exactly
    if not (math.isfinite(float(grad.sum())) or bool(torch.isfinite(grad).all())):
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
        return None, []
    source = grad
    if state.momentum > 0:
        source = state._flat_buffer("momentum", bucket)
        source.lerp_(grad, 1.0 - state.momentum)  # m = beta * m + (1 - beta) * g in one pass
    if not state.error_feedback:
        bits = pack_signs(source, state.step, dither=dither)
        return (bits.bitwise_not_() if state.flip_signs else bits), []
    error = state._flat_buffer("error", bucket)
    error.add_(source)  # p = m + e, held in the error buffer
    segments = state._segments(bucket)
    magnitude = error.abs()
    means = [
        magnitude[offset : offset + numel].mean() if numel else magnitude.new_zeros(()) for offset, numel in segments
    ]
    scales: list[float] = torch.stack(means).tolist()  # one device sync for the bucket
    bits = pack_signs(error, state.step, dither=dither)
    # e = p - scale * sign(p), one scale per parameter tensor
    error.sub_(_scale_segments(unpack_signs(bits, error.numel(), dtype=error.dtype), segments, scales))
    return (bits.bitwise_not_() if state.flip_signs else bits), scales


def _frame(
    bits: torch.Tensor | None,
    nbytes: int,
    chunks: int,
    chunk: int,
    scales: list[float],
    header: int,
    device: torch.device,
) -> torch.Tensor:
    """``chunks`` rows of ``[header | packed shard]``; the header carries the valid flag and the scales."""
    frame = torch.zeros(chunks, header + chunk, dtype=torch.uint8, device=device)
    if bits is not None:
        padded = torch.zeros(chunks * chunk, dtype=torch.uint8, device=device)
        padded[:nbytes] = bits
        frame[:, header:] = padded.view(chunks, chunk)
        head = bytearray(header)
        struct.pack_into(f"<B7x{len(scales)}f", head, 0, 1, *scales)
        frame[:, :header] = torch.frombuffer(head, dtype=torch.uint8).to(device)
    return frame


def _vote_rows(
    rows: torch.Tensor, step: int, dither: torch.Tensor, header: int, num_scales: int
) -> tuple[torch.Tensor, list[int], list[float]]:
    """Vote over the rows whose valid flag is set; return the voted bits, the abstaining rows, the mean scales."""
    flags = rows[:, 0].tolist()
    voters = [i for i, flag in enumerate(flags) if flag]
    abstained = [i for i, flag in enumerate(flags) if not flag]
    if not voters:
        return torch.zeros_like(rows[0, header:]), abstained, [0.0] * num_scales
    scales: list[float] = []
    if num_scales:
        sent = rows[voters, _FLAG : _FLAG + 4 * num_scales].cpu().contiguous().view(torch.float32)
        scales = sent.mean(0).tolist()
    return majority_vote_packed(rows[voters, header:], step, dither=dither), abstained, scales


def signsgd_hook(state: SignSGDState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: replace the bucket's gradient by the majority vote of the workers' signs.

    The returned gradient is ``+1``/``-1`` per coordinate (with error feedback ``scale * vote``, the scale of
    each parameter being the voters' mean of their ``mean|p|`` over that parameter; all zeros when every worker
    abstained), identical on every rank; apply it with ``Signum(momentum=0)`` or plain
    SGD, i.e. ``x -= lr * vote`` (plus decoupled weight decay).

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
    dither = state._dither_mask(bucket, shard * world if alltoall else shard)
    segments = state._segments(bucket) if state.error_feedback else []
    header = _header_size(len(segments))
    bits, scales = _local_signs(state, bucket, rank, dither)
    if alltoall:
        send = _frame(bits, nbytes, world, shard, scales, header, grad.device)
        received = torch.empty_like(send)
        state._wait(dist.all_to_all_single(received, send, group=group, async_op=True), "all_to_all", index)
        own = dither[rank * shard : (rank + 1) * shard]
        voted, abstained, mean_scales = _vote_rows(received, state.step, own, header, len(segments))
        gathered = torch.empty(world * shard, dtype=torch.uint8, device=grad.device)
        state._wait(_all_gather_single(gathered, voted, group), "all_gather", index)
    else:
        send = _frame(bits, nbytes, 1, shard, scales, header, grad.device)[0]
        rows = torch.empty(world * send.numel(), dtype=torch.uint8, device=grad.device)
        state._wait(_all_gather_single(rows, send, group), "all_gather", index)
        rows = rows.view(world, -1)
        gathered, abstained, mean_scales = _vote_rows(rows, state.step, dither, header, len(segments))
    for other in abstained:
        state.abstained.append((state.step, index, other))
        if other != rank and rank == 0:
            warnings.warn(
                f"signSGD: rank {other} abstained from the vote of bucket {index} at step {state.step} "
                "(non-finite gradient)",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
    if len(abstained) == world:
        grad.zero_()
    else:
        unpack_signs(gathered, n, out=grad)
        if state.error_feedback:
            _scale_segments(grad, segments, mean_scales)
    if bucket.is_last():
        state.step += 1
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(grad)
    return future


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
