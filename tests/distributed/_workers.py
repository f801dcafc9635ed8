"""Worker functions for the multi-process (gloo) tests; each runs in a spawned process."""

from __future__ import annotations

import copy
import os
import socket
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trinity_lightning.distributed import SignSGDState, Signum, WorkerFailureError, register_signsgd_hook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(fn: Any, world: int, out: Path, *args: Any) -> list[dict[str, Any]]:
    """Run ``fn(rank, world, port, out, *args)`` on ``world`` spawned processes; return what each saved."""
    port = free_port()
    mp.start_processes(fn, args=(world, port, str(out), *args), nprocs=world, join=True, start_method="spawn")
    return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _init(rank: int, world: int, port: int, timeout: float = 60.0) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout))


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(16, 20, generator=g), torch.randint(0, 3, (16,), generator=g)


def local_index(model: nn.Module) -> torch.Tensor:
    """For each coordinate of the flat parameter vector, its index inside its own parameter."""
    return torch.cat([torch.arange(p.numel()) for p in model.parameters()])


def reference_vote(momenta: list[torch.Tensor], step: int, index: torch.Tensor) -> torch.Tensor:
    """Plain-rule majority vote on float momenta: zeros and ties -> dither bit (i + step) % 2 (i in its tensor)."""
    dither = torch.where((index + step) % 2 == 1, 1.0, -1.0)
    signs = [torch.where(m > 0, 1.0, torch.where(m < 0, -1.0, dither)) for m in momenta]
    total = torch.stack(signs).sum(0)
    return torch.where(total > 0, 1.0, torch.where(total < 0, -1.0, dither))


def _flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def replicas_worker(
    rank: int, world: int, port: int, out: str, steps: int, beta: float, lr: float, nan_step: int
) -> None:
    """Train with several buckets; check the vote against a reference, identical replicas, resume, NaN policy."""
    _init(rank, world, port)
    base = make_model()
    shadow = copy.deepcopy(base)  # plain copy: its raw gradients feed the reference vote
    model = DistributedDataParallel(base, bucket_cap_mb=0.001)  # ~1k floats per bucket -> several buckets
    state = register_signsgd_hook(model, momentum=beta)
    optimizer = Signum(model.parameters(), lr=lr, momentum=0.0, weight_decay=0.01)
    momentum = torch.zeros(sum(p.numel() for p in base.parameters()))
    report: dict[str, Any] = {"vote_matches": [], "params": [], "warnings": [], "warning_files": []}
    saved: dict[str, Any] = {}
    for step in range(steps):
        x, y = batch(rank, step)
        scale = float("nan") if (rank == 1 and step == nan_step) else 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optimizer.zero_grad()
            (nn.functional.cross_entropy(model(x), y) * scale).backward()
        report["warnings"] += [str(w.message) for w in caught]
        report["warning_files"] += [w.filename for w in caught if "signSGD" in str(w.message)]
        shadow.load_state_dict(base.state_dict()) if step == 0 else None
        shadow.zero_grad()
        nn.functional.cross_entropy(shadow(x), y).mul(scale).backward()
        raw = _flat_grads(shadow)
        finite = bool(torch.isfinite(raw).all())
        gathered = [torch.empty_like(raw) for _ in range(world)]
        dist.all_gather(gathered, raw)
        valid = [g for g in gathered if torch.isfinite(g).all()]
        # every worker's momentum (a worker with NaN keeps its old one and abstains)
        all_m = [torch.empty_like(momentum) for _ in range(world)]
        new_m = momentum * beta + raw * (1 - beta) if finite else momentum
        dist.all_gather(all_m, new_m)
        momentum = new_m
        voters = [m for m, g in zip(all_m, gathered, strict=True) if torch.isfinite(g).all()]
        expected = reference_vote(voters, step, local_index(base)) if valid else None
        report["vote_matches"].append(None if expected is None else bool(torch.equal(expected, _flat_grads(base))))
        optimizer.step()
        if step == steps - 2:  # checkpoint before the last step
            saved = {
                "model": copy.deepcopy(base.state_dict()),
                "optim": copy.deepcopy(optimizer.state_dict()),
                "hook": state.state_dict(),
            }
        shadow.load_state_dict(base.state_dict())
        report["params"].append(_flat_params(base).clone())
    report["abstained"] = list(state.abstained)
    report["buckets"] = len({index for _, index in state._flat})
    report["comm_hook"] = model._get_ddp_logging_data().get("comm_hook")
    # resume: a fresh DDP model + state from the saved dicts must make the same last update
    fresh = make_model()
    fresh.load_state_dict(saved["model"])
    fresh_ddp = DistributedDataParallel(fresh, bucket_cap_mb=0.001)
    fresh_state = SignSGDState(momentum=beta)
    register_signsgd_hook(fresh_ddp, fresh_state)
    fresh_state.load_state_dict(saved["hook"])
    fresh_opt = Signum(fresh_ddp.parameters(), lr=lr, momentum=0.0, weight_decay=0.01)
    fresh_opt.load_state_dict(saved["optim"])
    x, y = batch(rank, steps - 1)
    fresh_opt.zero_grad()
    nn.functional.cross_entropy(fresh_ddp(x), y).backward()
    fresh_opt.step()
    report["resumed_last"] = _flat_params(fresh).clone()
    report["ef"] = _error_feedback_resume(rank, lr)
    torch.save(report, Path(out) / f"rank{rank}.pt")
    # a dead worker: rank 1 exits abruptly; rank 0's next vote must fail fast with a clear error
    if rank == 1:
        os._exit(0)
    state.timeout = timedelta(seconds=10)
    x, y = batch(rank, steps)
    start, error = time.perf_counter(), None
    try:
        nn.functional.cross_entropy(model(x), y).backward()
    except WorkerFailureError as exc:
        error = str(exc)
    torch.save({"error": error, "seconds": time.perf_counter() - start}, Path(out) / "dead_worker.pt")
    os._exit(0)


def _layout(state: SignSGDState) -> list[int]:
    """Sizes of the flat momentum buffers the hook holds now, one per DDP bucket (its current bucket layout)."""
    return sorted(flat.numel() for (kind, _), (_, flat) in state._flat.items() if kind == "momentum")


def _error_feedback_resume(rank: int, lr: float, steps: int = 4) -> dict[str, Any]:
    """EF-signSGD with momentum: save the hook state before the last step, resume into a fresh DDP model.

    The fresh model starts with DDP's initial bucket layout (one bucket in torch 2.13) while the state was saved
    from the rebuilt layout (several buckets): the buffers must follow the parameters, not the buckets.
    """
    base = make_model()
    model = DistributedDataParallel(base, bucket_cap_mb=0.001)
    state = register_signsgd_hook(model, momentum=0.5, error_feedback=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    saved: dict[str, Any] = {}
    for step in range(steps):
        if step == steps - 1:
            saved = {"model": copy.deepcopy(base.state_dict()), "hook": state.state_dict(), "layout": _layout(state)}
        x, y = batch(rank, 100 + step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    report: dict[str, Any] = {"params": _flat_params(base).clone(), "saved": saved["hook"], "layout": saved["layout"]}
    for restore in (True, False):
        fresh = make_model()
        fresh.load_state_dict(saved["model"])
        fresh_ddp = DistributedDataParallel(fresh, bucket_cap_mb=0.001)
        fresh_state = register_signsgd_hook(fresh_ddp, momentum=0.5, error_feedback=True)
        if restore:
            fresh_state.load_state_dict(saved["hook"])
        fresh_opt = torch.optim.SGD(fresh_ddp.parameters(), lr=lr)
        x, y = batch(rank, 100 + steps - 1)
        fresh_opt.zero_grad()
        nn.functional.cross_entropy(fresh_ddp(x), y).backward()
        fresh_opt.step()
        key = "resumed" if restore else "restarted"
        report[key] = _flat_params(fresh).clone()
        report[f"{key}_layout"] = _layout(fresh_state)
    return report


def three_worker(rank: int, world: int, port: int, out: str) -> None:
    """Odd world size: both communication modes, an adversary with negated signs, error feedback."""
    _init(rank, world, port)
    x, y = batch(rank, 0)
    plain = make_model()
    nn.functional.cross_entropy(plain(x), y).backward()
    raw = _flat_grads(plain)
    gathered = [torch.empty_like(raw) for _ in range(world)]
    dist.all_gather(gathered, raw)
    report: dict[str, Any] = {"raw": gathered}
    variants: dict[str, dict[str, Any]] = {
        "alltoall": {"communication": "alltoall"},
        "allgather": {"communication": "allgather"},
        "adversary": {"flip_signs": rank == 2},
        "ef": {"error_feedback": True},
    }
    for name, kwargs in variants.items():
        model = DistributedDataParallel(make_model(), bucket_cap_mb=0.001)
        register_signsgd_hook(model, momentum=0.0, **kwargs)
        nn.functional.cross_entropy(model(x), y).backward()
        report[name] = _flat_grads(model.module)
        report["index"] = local_index(model.module)
    torch.save(report, Path(out) / f"rank{rank}.pt")
    # no destroy_process_group(): on torch 2.13 gloo its destructor joined the gloo runloop thread while holding
    # the GIL that thread was waiting for, and hung once; every collective has finished here
    os._exit(0)
