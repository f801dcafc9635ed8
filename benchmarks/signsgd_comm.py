"""Communication of signSGD majority vote vs fp32 all-reduce, fp16 compression and PowerSGD (DDP comm hooks).

Two measurements, each with our hook and the anchors interleaved in one run:

* bytes: world sizes 2, 4, 8 (gloo processes on loopback); every collective a hook issues is intercepted
  (``torch.distributed.all_reduce / all_gather* / all_to_all_single``) and converted to the bytes one worker
  sends with the standard algorithms (ring all-reduce ``2 (W-1)/W * B``, ring all-gather ``(W-1) * B`` for a
  ``B``-byte input, all-to-all ``(W-1)/W * B``).
* time: the hook's whole wall time (pack, collectives, vote, unpack; ``hook(state, bucket).wait()``), median over
  50 steps, world size 4, a 25.2M-parameter gradient in one DDP-style bucket (six 1024 x 4096 matrices plus
  biases), over loopback and over 1 Gbit/s links between network namespaces (veth pairs on a bridge,
  ``tc tbf rate 1gbit`` on both ends of every link; created here and removed at the end; needs root).

* step: a whole DDP training step (forward, backward with the hook, optimizer step) of an MLP, fp32 DDP vs DDP
  with the signSGD hook, alternating, world size 4 on loopback (``step_time_vs_fp32_ddp_loopback``).

The hook's CPU time per step (``time.process_time``, every thread of the process) is recorded beside its wall
time, and the bytes are converted to the payload's time on a 1 Gbit/s wire (``wire_ms_at_1gbit``).

* cpu profile: the hook's CPU time per stage (sign packing with the momentum update, send frame, vote, unpack)
  in one process with one thread (``time.thread_time``), the frames of 4 voters, so other processes on the
  cores do not inflate it (``hook_cpu_stages_ms``); ``--cpu-profile`` runs only this, and with
  ``--baseline-ref REF`` alternates with the package of a git commit (``signsgd_hook_cpu.json``).

    python benchmarks/signsgd_comm.py --layers 2 --width 1024 --steps 30   # the issue's 8.4M parameters
    python benchmarks/signsgd_comm.py            # everything, 25.2M parameters (about 12 minutes on 2 cores)
    python benchmarks/signsgd_comm.py --quick    # smaller model, fewer steps (a smoke test)
    python benchmarks/signsgd_comm.py --cpu-profile --layers 2 --width 1024 --steps 20 --baseline-ref 3e366cc
    python benchmarks/signsgd_comm.py --cpu-profile --layers 2 --width 1024 --steps 20 --merge  # into the results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("fp32_allreduce", "fp16_hook", "powersgd_r1", "powersgd_r4", "signsgd_mv")
_SENT: list[tuple[str, int]] = []


# ---------------------------------------------------------------------------------------------- worker side
class FakeBucket:
    """The parts of ``dist.GradBucket`` the hooks use, over one flat gradient split into parameter views."""

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        self._params = [torch.nn.Parameter(torch.empty(s)) for s in shapes]
        self._buffer = torch.empty(sum(p.numel() for p in self._params))
        self._views: list[torch.Tensor] = []
        offset = 0
        for p in self._params:
            self._views.append(self._buffer[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def set_buffer(self, tensor: torch.Tensor) -> None:
        self._buffer.copy_(tensor)

    def gradients(self) -> list[torch.Tensor]:
        return self._views

    def parameters(self) -> list[torch.nn.Parameter]:
        return self._params

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True


def _count(name: str, original: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name == "all_to_all_single" or name in ("all_gather_into_tensor", "all_gather_single"):
            size = tensors[1].numel() * tensors[1].element_size()
        elif name == "all_gather":
            size = (
                tensors[0].numel() * tensors[0].element_size() if tensors else args[1].numel() * args[1].element_size()
            )
        else:
            size = tensors[0].numel() * tensors[0].element_size()
        _SENT.append((name, size))
        return original(*args, **kwargs)

    return wrapper


def _install_counters() -> None:
    for name in ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_single", "all_to_all_single"):
        if hasattr(dist, name):
            setattr(dist, name, _count(name, getattr(dist, name)))


def _bytes_sent(world: int) -> float:
    total = 0.0
    for name, size in _SENT:
        if name == "all_reduce":
            total += 2 * (world - 1) / world * size
        elif name == "all_to_all_single":
            total += (world - 1) / world * size
        else:  # all-gather family: every worker forwards W-1 chunks of its input size
            total += (world - 1) * size
    return total


def _hooks(world: int) -> dict[str, tuple[Any, Any]]:
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    from trinity_lightning.distributed import SignSGDState, signsgd_hook

    def powersgd(rank: int) -> Any:
        return powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=rank,
            start_powerSGD_iter=2,
            min_compression_rate=2,
            use_error_feedback=True,
            warm_start=True,
        )

    return {
        "fp32_allreduce": (None, default_hooks.allreduce_hook),
        "fp16_hook": (None, default_hooks.fp16_compress_hook),
        "powersgd_r1": (powersgd(1), powerSGD_hook.powerSGD_hook),
        "powersgd_r4": (powersgd(4), powerSGD_hook.powerSGD_hook),
        "signsgd_mv": (SignSGDState(momentum=0.9, timeout=timedelta(minutes=5)), signsgd_hook),
    }


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    _install_counters()
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{args.master}:{args.port}",
        rank=args.rank,
        world_size=args.world,
        timeout=timedelta(minutes=10),
    )
    shapes: list[tuple[int, ...]] = []
    for _ in range(args.layers):
        shapes += [(args.width, 4 * args.width), (args.width,)]
    bucket = FakeBucket(shapes)
    generator = torch.Generator().manual_seed(args.rank)
    grad = torch.randn(bucket.buffer().numel(), generator=generator)
    hooks = _hooks(args.world)
    warmup = 2  # PowerSGD compresses from its third call (vanilla all-reduce before start_powerSGD_iter)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    sent: dict[str, float] = {}
    for step in range(warmup + args.steps):
        for method in METHODS:
            state, hook = hooks[method]
            bucket.buffer().copy_(grad)
            dist.barrier()
            _SENT.clear()
            start, cpu_start = time.perf_counter(), time.process_time()
            hook(state, bucket).wait()
            elapsed = time.perf_counter() - start
            if step >= warmup:
                times[method].append(elapsed)
                cpu[method].append(time.process_time() - cpu_start)  # all threads of this process (gloo's too)
                sent[method] = _bytes_sent(args.world)
    if args.rank == 0:
        result = {
            "world": args.world,
            "params": bucket.buffer().numel(),
            "times_s": times,
            "bytes_sent": sent,
            "median_ms": {m: 1000 * statistics.median(v) for m, v in times.items()},
            "cpu_median_ms": {m: 1000 * statistics.median(v) for m, v in cpu.items()},
        }
        from _results import write_json

        write_json(Path(args.out), result, indent=None)
    dist.barrier()
    dist.destroy_process_group()


def ddp_step_worker(args: argparse.Namespace) -> None:
    """A whole DDP training step (forward, backward with the hook, optimizer), fp32 DDP vs signSGD, alternating."""
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from trinity_lightning.distributed import Signum, register_signsgd_hook

    torch.set_num_threads(args.threads)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{args.master}:{args.port}",
        rank=args.rank,
        world_size=args.world,
        timeout=timedelta(minutes=10),
    )

    def make() -> nn.Module:
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(args.layers // 2):
            layers += [nn.Linear(args.width, 4 * args.width), nn.ReLU(), nn.Linear(4 * args.width, args.width)]
        return nn.Sequential(*layers, nn.Linear(args.width, 10))

    fp32 = DistributedDataParallel(make())
    fp32_opt = torch.optim.SGD(fp32.parameters(), lr=1e-3, momentum=0.9)
    sign = DistributedDataParallel(make())
    register_signsgd_hook(sign, momentum=0.9, timeout=timedelta(minutes=5))
    sign_opt = Signum(sign.parameters(), lr=1e-4, momentum=0.0)
    gen = torch.Generator().manual_seed(args.rank)
    x = torch.randn(args.batch, args.width, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    models = {"fp32_ddp": (fp32, fp32_opt), "signsgd_ddp": (sign, sign_opt)}
    times: dict[str, list[float]] = {m: [] for m in models}
    for step in range(2 + args.steps):
        for name, (model, optimizer) in models.items():
            dist.barrier()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=False)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            if step >= 2:  # DDP rebuilds its buckets after the first step
                times[name].append(time.perf_counter() - start)
    if args.rank == 0:
        from _results import write_json

        params = sum(p.numel() for p in fp32.parameters())
        result = {
            "params": params,
            "times_s": times,
            "median_ms": {m: 1000 * statistics.median(v) for m, v in times.items()},
        }
        write_json(Path(args.out), result, indent=None)
    dist.barrier()
    dist.destroy_process_group()


STAGES = ("signs", "frame", "vote", "unpack")


def profile_worker(args: argparse.Namespace) -> None:
    """CPU time of each stage of the hook, in one process: the hook's own functions on an 8.4M-parameter bucket
    (with the default sizes) and the frames of ``--world`` voters, ``time.thread_time`` per stage (one thread).

    Stages: ``signs`` (finite check, momentum update, sign packing: ``_local_signs``), ``frame`` (the shards and
    the valid flag copied into the send frame), ``vote`` (``_vote_frames`` on the ``W`` received frames of this
    rank's shard), ``unpack`` (``_unpack`` of the ``W`` gathered voted shards into the bucket buffer). The
    collectives themselves are left out (they run on the backend's threads).
    """
    import dataclasses

    from trinity_lightning.distributed import SignSGDState
    from trinity_lightning.distributed import hook as signsgd
    from trinity_lightning.distributed.packing import packed_size

    torch.set_num_threads(args.threads)
    shapes: list[tuple[int, ...]] = []
    for _ in range(args.layers):
        shapes += [(args.width, 4 * args.width), (args.width,)]
    bucket = FakeBucket(shapes)
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(bucket.buffer().numel(), generator=generator)
    world, n = args.world, grad.numel()
    state = SignSGDState(momentum=args.profile_momentum, error_feedback=args.error_feedback)
    nbytes = packed_size(n)
    shard = -(-nbytes // world)
    shard += -shard % 8
    segments = state._segments(bucket) if args.error_feedback else []
    header = signsgd._header_size(len(segments))
    dither = state._dither_mask(bucket, shard * world)
    bits = torch.zeros(shard * world, dtype=torch.uint8)
    send = torch.zeros(world, header + shard, dtype=torch.uint8)
    received = torch.randint(0, 256, (world, header + shard), dtype=torch.uint8, generator=generator)
    received[:, :header] = 0
    received[:, 0] = 1  # every voter valid
    if segments:
        received[:, signsgd._FLAG : signsgd._FLAG + 4 * len(segments)] = (
            torch.ones(world, len(segments)).view(torch.uint8).view(world, -1)
        )
    gathered = torch.randint(0, 256, (world * shard,), dtype=torch.uint8, generator=generator)
    fields = {f.name for f in dataclasses.fields(signsgd._Vote)}
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    for rep in range(2 + args.steps):
        bucket.buffer().copy_(grad)
        t0 = time.thread_time()
        valid, scales = signsgd._local_signs(state, bucket, 0, dither, bits[:nbytes])
        t1 = time.thread_time()
        send[:, header:] = bits.view(world, shard)
        send[:, 0] = valid
        if scales is not None:
            send[:, signsgd._FLAG : signsgd._FLAG + 4 * len(segments)] = scales.to(torch.float32).view(torch.uint8)
        t2 = time.thread_time()
        received[0].copy_(send[0])  # this rank's own shard, as all_to_all delivers it (not timed)
        values = dict(
            index=0, step=state.step, rank=0, world=world, alltoall=True, deferred=False, work=None,
            received=received.view(-1), dither=dither[:shard], header=header, shard=shard, grad=bucket.buffer(),
            segments=segments, future=torch.futures.Future(),
        )  # fmt: skip
        vote = signsgd._Vote(**{k: v for k, v in values.items() if k in fields})
        t3 = time.thread_time()
        _, _, voted_scales, any_valid = signsgd._vote_frames(vote)
        t4 = time.thread_time()
        signsgd._unpack(vote, gathered, voted_scales, any_valid)
        t5 = time.thread_time()
        state.step += 1
        if rep >= 2:
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t4 - t3, t5 - t4), strict=True):
                samples[stage].append(1000 * seconds)
            samples["total"].append(1000 * (t2 - t0 + t5 - t3))
    from _results import write_json

    write_json(Path(args.out), {"params": n, "world": world, "samples_ms": samples}, indent=None)


# ---------------------------------------------------------------------------------------------- driver side
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(
    world: int,
    steps: int,
    layers: int,
    width: int,
    namespaces: list[str] | None = None,
    threads: int = 1,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="signsgd_comm_")) / "rank0.json"
    port = _free_port()
    master = "10.77.0.1" if namespaces else "127.0.0.1"
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), GLOO_SOCKET_IFNAME=f"w{rank}" if namespaces else "lo")
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--rank",
            str(rank),
            "--world",
            str(world),
            "--port",
            str(port),
            "--master",
            master,
            "--steps",
            str(steps),
            "--layers",
            str(layers),
            "--width",
            str(width),
            "--threads",
            str(threads),
            "--out",
            str(out),
            *extra,
        ]
        if namespaces:
            cmd = ["ip", "netns", "exec", namespaces[rank], *cmd]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait(timeout=3600) for p in procs]
    if any(codes):
        raise RuntimeError(f"benchmark workers failed with exit codes {codes}")
    return json.loads(out.read_text())


def _source_tree(ref: str) -> tuple[Path, str]:
    """``src/`` of the git ``ref`` of this repository, extracted to a temporary folder, and the commit's hash."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if commit.returncode:
        raise SystemExit(f"--baseline-ref: {ref!r} is not a commit of {root}: {commit.stderr.strip()}")
    folder = Path(tempfile.mkdtemp(prefix="signsgd_baseline_"))
    archive = subprocess.run(["git", "-C", str(root), "archive", commit.stdout.strip(), "src"], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src", commit.stdout.strip()


def cpu_profile(args: argparse.Namespace, baseline_ref: str = "", rounds: int = 1) -> dict[str, Any]:
    """Per-stage CPU ms of the hook (:func:`profile_worker`), momentum (Signum), error feedback and no momentum
    (signSGD), ours and, with ``baseline_ref``, the package of that git commit, in alternating subprocesses
    (``rounds`` each)."""
    sources = {"ours": Path(__file__).resolve().parent.parent / "src"}
    details: dict[str, Any] = {}
    if baseline_ref:
        sources["baseline"], details["baseline_commit"] = _source_tree(baseline_ref)
        details["baseline_ref"] = baseline_ref
    configs = {
        "momentum": (),
        "error_feedback": ("--error-feedback",),
        "no_momentum": ("--profile-momentum", "0"),  # signSGD: the packing pass also proves the bucket finite
    }
    samples: dict[str, dict[str, dict[str, list[float]]]] = {c: {label: {} for label in sources} for c in configs}
    for round_ in range(rounds):
        for config, flags in configs.items():
            order = list(sources.items())
            for label, src in order[::-1] if round_ % 2 else order:  # ABBA: a load that drifts favours neither
                out = Path(tempfile.mkdtemp(prefix="signsgd_profile_")) / "profile.json"
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])
                cmd = [sys.executable, __file__, "--profile-worker", "--out", str(out), "--steps", str(args.steps)]
                cmd += ["--layers", str(args.layers), "--width", str(args.width), "--world", str(args.world)]
                subprocess.run([*cmd, "--threads", str(args.threads), *flags], env=env, check=True)
                result = json.loads(out.read_text())
                details["params"], details["world"] = result["params"], result["world"]
                for stage, values in result["samples_ms"].items():
                    samples[config][label].setdefault(stage, []).extend(values)
    details["median_ms"] = {
        config: {label: {k: statistics.median(v) for k, v in stages.items()} for label, stages in by_label.items()}
        for config, by_label in samples.items()
    }
    details["samples_ms"] = samples
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    details["loaded"] = load > (os.cpu_count() or 1)  # CPU times inflate too (memory bandwidth, caches): re-run idle
    details["method"] = (
        "one process, one thread, time.thread_time around each stage of the hook's own functions (_local_signs, "
        f"send frame, _vote_frames on {args.world} voters' frames, _unpack into the bucket), {rounds} alternating "
        f"round(s) (ABBA order) of {args.steps} steps after 2 warm-up steps; collectives left out"
    )
    return details


def merge_hook_cpu(args: argparse.Namespace, profile: dict[str, Any]) -> None:
    """Put a fresh CPU profile and the hook's CPU per call in the 4-process loopback run (``process_time``, all
    threads) into ``signsgd_comm.json``, keeping its claims and wall times (those need an idle machine)."""
    from _results import machine, read_results, write_json

    results = read_results("signsgd_comm")
    when = {"date": time.strftime("%Y-%m-%d"), "load_average": machine().get("load_average")}
    details = results["details"]
    details["hook_cpu_stages_ms"] = {"median_ms": profile["median_ms"], "method": profile["method"], **when}
    loop = _launch(4, args.steps, args.layers, args.width)
    details.setdefault("hook_cpu_ms", {})["loopback_w4"] = loop["cpu_median_ms"]
    details["hook_cpu_ms"]["merged"] = {
        "command_line": " ".join(sys.argv[1:]),
        "steps": args.steps,
        "note": "loopback_w4 from this merge, 1gbit_w4 from the run that wrote the claims",
        **when,
    }
    print("hook CPU per call, loopback w4, ms:", loop["cpu_median_ms"], flush=True)
    print(f"merged into {write_json(RESULTS / 'signsgd_comm.json', results)}")


def _sh(*cmd: str, check: bool = True) -> None:
    subprocess.run(cmd, check=check, capture_output=True)


def setup_network(world: int, rate: str = "1gbit") -> list[str]:
    """Namespaces sgdw0..: veth ``w<r>`` (10.77.0.<r+1>) to a bridge in namespace sgdsw; tbf on both ends."""
    teardown_network(world)
    _sh("ip", "netns", "add", "sgdsw")
    _sh("ip", "netns", "exec", "sgdsw", "ip", "link", "add", "br0", "type", "bridge")
    _sh("ip", "netns", "exec", "sgdsw", "ip", "link", "set", "br0", "up")
    names = []
    for rank in range(world):
        ns = f"sgdw{rank}"
        names.append(ns)
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", f"w{rank}", "netns", ns, "type", "veth", "peer", "name", f"s{rank}", "netns", "sgdsw")
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.0.{rank + 1}/24", "dev", f"w{rank}")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", f"w{rank}", "up")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _sh("ip", "netns", "exec", "sgdsw", "ip", "link", "set", f"s{rank}", "master", "br0")
        _sh("ip", "netns", "exec", "sgdsw", "ip", "link", "set", f"s{rank}", "up")
        for where, dev in ((ns, f"w{rank}"), ("sgdsw", f"s{rank}")):
            _sh(
                "ip",
                "netns",
                "exec",
                where,
                "tc",
                "qdisc",
                "add",
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "256kb",
                "latency",
                "50ms",
            )
    return names


def teardown_network(world: int) -> None:
    for rank in range(max(world, 8)):
        _sh("ip", "netns", "del", f"sgdw{rank}", check=False)
    _sh("ip", "netns", "del", "sgdsw", check=False)


def lightning_smoke(accelerator: str, steps: int = 30) -> tuple[list[float], Any]:
    """``Trainer(strategy="ddp_signsgd", devices=1)`` on a 2-layer MLP, Signum (momentum 0.9, moved into the hook),
    one full batch of 256 random examples per step (the benchmarks' harness); returns the losses and the strategy.
    """
    from lightning.pytorch.callbacks import Callback

    from _harness import Supervised, step_loader, trainer
    from trinity_lightning.distributed import Signum

    losses: list[float] = []

    class Losses(Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            losses.append(float(outputs["loss"]))

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(256, 64), torch.randint(0, 2, (256,)))
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    module = Supervised(net, lambda params: Signum(params, lr=1e-2, momentum=0.9))
    run = trainer(
        strategy="ddp_signsgd",
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        callbacks=[Losses()],
        use_distributed_sampler=False,
    )
    run.fit(module, step_loader(data, steps, len(data), seed=0))
    return losses, run.strategy


def nccl_profile(args: argparse.Namespace) -> None:
    """World size 1 on one GPU: ``torch.profiler`` tables of the hook (momentum 0.9) over NCCL, by GPU time and by
    host time, so the GPU path's cost can be attributed (kernels, host synchronisations, Python)."""
    from torch.profiler import ProfilerActivity, profile

    from trinity_lightning.distributed import SignSGDState, signsgd_hook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    on_gpu = torch.cuda.is_available()  # without a GPU: the same steps on gloo (a wiring check)
    dist.init_process_group("nccl" if on_gpu else "gloo", rank=0, world_size=1)
    device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    shapes: list[tuple[int, ...]] = []
    for _ in range(args.layers):
        shapes += [(args.width, 4 * args.width), (args.width,)]
    bucket = FakeBucket(shapes)
    bucket._buffer = bucket._buffer.to(device)
    bucket._views = [v.to(device) for v in bucket._views]
    bucket._params = [torch.nn.Parameter(p.to(device)) for p in bucket._params]
    grad = torch.randn(bucket.buffer().numel(), device=device)
    state = SignSGDState(momentum=0.9)
    for _ in range(5):
        bucket.buffer().copy_(grad)
        signsgd_hook(state, bucket).wait()
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    sync()
    steps = 10
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            bucket.buffer().copy_(grad)
            signsgd_hook(state, bucket).wait()
        sync()
        wall = (time.perf_counter() - start) / steps
    dist.destroy_process_group()
    events = prof.key_averages()
    text = f"hook over NCCL, world 1, {grad.numel():,} parameters, {steps} calls, {1000 * wall:.3f} ms per call "
    text += "(profiled)\n\n"
    if on_gpu:
        text += events.table(sort_by="cuda_time_total", row_limit=30) + "\n\n"
    text += events.table(sort_by="cpu_time_total", row_limit=30)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "signsgd_nccl_profile.txt").write_text(text)


def nccl_smoke(args: argparse.Namespace) -> None:
    """World size 1 on one GPU: the hook over NCCL (timing vs the fp32 all-reduce hook), then 30 training steps
    through ``Trainer(strategy="ddp_signsgd")`` (:func:`lightning_smoke`)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from _results import write_results
    from trinity_lightning.distributed import SignSGDState, signsgd_hook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1)
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    shapes: list[tuple[int, ...]] = []
    for _ in range(args.layers):
        shapes += [(args.width, 4 * args.width), (args.width,)]
    bucket = FakeBucket(shapes)
    bucket._buffer = bucket._buffer.to(device)
    bucket._views = [v.to(device) for v in bucket._views]
    bucket._params = [torch.nn.Parameter(p.to(device)) for p in bucket._params]
    grad = torch.randn(bucket.buffer().numel(), device=device)
    state = SignSGDState(momentum=0.9)
    times: dict[str, list[float]] = {"fp32_allreduce": [], "signsgd_mv": []}
    for step in range(25):
        for name, (st, hook) in {
            "fp32_allreduce": (None, default_hooks.allreduce_hook),
            "signsgd_mv": (state, signsgd_hook),
        }.items():
            bucket.buffer().copy_(grad)
            torch.cuda.synchronize()
            start = time.perf_counter()
            hook(st, bucket).wait()
            torch.cuda.synchronize()
            if step >= 5:
                times[name].append(1000 * (time.perf_counter() - start))
    expected = torch.where(grad > 0, 1.0, -1.0)
    vote_ok = bool(torch.equal(bucket.buffer()[grad != 0], expected[grad != 0]))
    dist.destroy_process_group()
    losses, strategy = lightning_smoke("gpu")
    details = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "world_size": 1,
        "params": grad.numel(),
        "hook_ms_median": {k: statistics.median(v) for k, v in times.items()},
        "vote_equals_own_signs": vote_ok,
        "ddp_losses_first_last": [losses[0], losses[-1]],
        "lightning_hook_steps": strategy.signsgd_state.step,
        "lightning_momentum_in_hook": strategy.signsgd_state.momentum,
        "note": "world size 1 (one GPU): exercises NCCL all_to_all/all_gather, packing and unpacking on the "
        "GPU; communication volume needs several GPUs",
    }
    print(json.dumps(details, indent=1))
    write_results("signsgd_nccl", [], details, results_dir=Path(args.out) if args.out else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-step", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help="examples per worker per DDP step")
    parser.add_argument("--step-layers", type=int, default=6, help="Linear layers of the DDP-step MLP (pairs)")
    parser.add_argument("--step-width", type=int, default=512)
    parser.add_argument("--step-steps", type=int, default=20)
    parser.add_argument("--skip-step", action="store_true", help="skip the whole-DDP-step measurement")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--master", default="127.0.0.1")
    parser.add_argument("--out", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-netns", action="store_true")
    parser.add_argument("--note", default="", help="how the machine was run (recorded in details.note)")
    parser.add_argument("--skip-bytes", action="store_true", help="reuse the byte counts of the last results file")
    parser.add_argument("--nccl-smoke", action="store_true", help="one-GPU NCCL smoke test (world size 1)")
    parser.add_argument("--nccl-profile", action="store_true", help="one-GPU torch.profiler tables of the hook")
    parser.add_argument(
        "--cpu-profile", action="store_true", help="only the hook's CPU per stage, one process (signsgd_hook_cpu.json)"
    )
    parser.add_argument("--baseline-ref", default="", help="with --cpu-profile: also profile src/ of this git ref")
    parser.add_argument("--rounds", type=int, default=3, help="with --cpu-profile: alternating rounds")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --cpu-profile: also time the hook's CPU in the 4-process loopback run and put both into "
        "signsgd_comm.json's details (hook_cpu_stages_ms, hook_cpu_ms.loopback_w4); its claims are kept",
    )
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--error-feedback", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-momentum", type=float, default=0.9, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_worker:
        profile_worker(args)
        return
    if args.worker:
        ddp_step_worker(args) if args.ddp_step else worker(args)
        return
    if args.nccl_profile:
        nccl_profile(args)
        return
    if args.nccl_smoke:
        nccl_smoke(args)
        return
    from _results import claim, write_results

    if args.cpu_profile:
        profile = cpu_profile(args, args.baseline_ref, args.rounds)
        print(json.dumps(profile["median_ms"], indent=1))
        print(f"wrote {write_results('signsgd_hook_cpu', [], {'command_line': ' '.join(sys.argv[1:]), **profile})}")
        if args.merge:
            merge_hook_cpu(args, profile)
        return
    if args.quick:
        args.steps, args.layers, args.width = 5, 2, 512
        args.step_steps, args.step_layers, args.step_width = 5, 2, 256
    details: dict[str, Any] = {
        "command_line": " ".join(sys.argv[1:]),
        "model": f"{args.layers} x ({args.width} x {4 * args.width} + bias), one bucket",
        "steps": args.steps,
        "threads_per_process": args.threads,
        "byte_formulas": "ring all-reduce 2(W-1)/W*B; all-gather (W-1)*B_in; all-to-all (W-1)/W*B_in",
        "bytes": {},
        "time_ms": {},
        # the 1-minute load average lags: sampled before any worker starts, it shows the load of other work; during
        # the run the benchmark's own 4 worker processes add about 4 to it on their own
        "load_average_before": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if args.note:
        details["note"] = args.note
    previous = RESULTS / "signsgd_comm.json"
    if args.skip_bytes and previous.is_file():  # byte counts are deterministic: reuse the last run's
        old = json.loads(previous.read_text())["details"]
        details["bytes"], details["params"] = old["bytes"], old["params"]
        details["bytes_from"] = f"run of {json.loads(previous.read_text())['date']} (same model)"
    else:
        for world in (2, 4, 8):
            res = _launch(world, 1, args.layers, args.width)
            details["bytes"][f"w{world}"] = res["bytes_sent"]
            details["params"] = res["params"]
            print(f"bytes w{world}:", {k: f"{v / 1e6:.2f} MB" for k, v in res["bytes_sent"].items()}, flush=True)
    stages = cpu_profile(args)  # the hook's CPU per stage, one process (no other worker on the cores)
    details["hook_cpu_stages_ms"] = {"median_ms": stages["median_ms"], "method": stages["method"]}
    print("hook CPU per stage, ms:", json.dumps(stages["median_ms"]), flush=True)
    loop = _launch(4, args.steps, args.layers, args.width)
    details["time_ms"]["loopback_w4"] = loop["median_ms"]
    details["hook_cpu_ms"] = {"loopback_w4": loop["cpu_median_ms"]}
    details["time_samples_ms"] = {"loopback_w4": {k: [1000 * t for t in v] for k, v in loop["times_s"].items()}}
    print("loopback w4 median ms:", loop["median_ms"], flush=True)
    link = None
    if not args.skip_netns:
        try:
            names = setup_network(4)
            link = _launch(4, args.steps, args.layers, args.width, namespaces=names)
        finally:
            teardown_network(4)
        details["time_ms"]["1gbit_w4"] = link["median_ms"]
        details["hook_cpu_ms"]["1gbit_w4"] = link["cpu_median_ms"]
        details["time_samples_ms"]["1gbit_w4"] = {k: [1000 * t for t in v] for k, v in link["times_s"].items()}
        details["network"] = (
            "4 network namespaces, veth pairs to a bridge in a 5th namespace, tc tbf rate 1gbit "
            "burst 256kb latency 50ms on both ends of each link; removed after the run"
        )
        print("1gbit w4 median ms:", link["median_ms"], flush=True)
    b4 = details["bytes"]["w4"]
    details["wire_ms_at_1gbit"] = {m: 1000 * 8 * v / 1e9 for m, v in b4.items()}  # bytes one worker sends
    step = None
    if not args.skip_step:
        step = _launch(
            4,
            args.step_steps,
            args.step_layers,
            args.step_width,
            extra=("--ddp-step", "--batch", str(args.batch)),
        )
        details["ddp_step_loopback_w4"] = {
            "model": f"MLP of {args.step_layers // 2} blocks Linear({args.step_width}, {4 * args.step_width}) "
            f"ReLU Linear({4 * args.step_width}, {args.step_width}) + Linear({args.step_width}, 10), "
            f"{step['params']} parameters, batch {args.batch} per worker",
            "median_ms": step["median_ms"],
            "samples_ms": {k: [1000 * t for t in v] for k, v in step["times_s"].items()},
        }
        print("DDP step loopback w4 median ms:", step["median_ms"], flush=True)
    claims = [
        claim(
            "bytes_vs_fp32_allreduce_w4",
            f"bytes sent per worker per step, world size 4, {details['params'] / 1e6:.1f}M-parameter "
            "gradient, counted from the collectives issued: fp32 all-reduce / signSGD majority vote",
            ours=b4["signsgd_mv"],
            anchor=b4["fp32_allreduce"],
            unit="bytes",
            better="lower",
            target=25,
        )
    ]
    timed = link or loop
    where = "1 Gbit/s links (network namespaces, tc tbf)" if link else "loopback (network namespaces unavailable)"
    ms = timed["median_ms"]
    claims.append(
        claim(
            "comm_time_vs_fp32_allreduce_w4",
            f"DDP comm-hook wall time per step, world size 4, {where}, median of {args.steps}: "
            "fp32 all-reduce hook / signSGD majority-vote hook",
            ours=ms["signsgd_mv"],
            anchor=ms["fp32_allreduce"],
            unit="ms",
            better="lower",
            target=10.0,
            hook_cpu_ms=timed["cpu_median_ms"]["signsgd_mv"],
            payload_wire_ms_at_1gbit=details["wire_ms_at_1gbit"]["signsgd_mv"],
            loopback_ours=loop["median_ms"]["signsgd_mv"],
            loopback_anchor=loop["median_ms"]["fp32_allreduce"],
        )
    )
    claims.append(
        claim(
            "comm_time_vs_powersgd_r4_w4",
            f"DDP comm-hook wall time per step, world size 4, {where}, median of {args.steps}: "
            "PowerSGD rank-4 hook (torch) / signSGD majority-vote hook",
            ours=ms["signsgd_mv"],
            anchor=ms["powersgd_r4"],
            unit="ms",
            better="lower",
            target=3.0,
            loopback_ours=loop["median_ms"]["signsgd_mv"],
            loopback_anchor=loop["median_ms"]["powersgd_r4"],
        )
    )
    if step is not None:
        claims.append(
            claim(
                "step_time_vs_fp32_ddp_loopback",
                f"whole DDP training step (forward, backward with the comm hook, optimizer step), world size 4, "
                f"gloo on loopback, {step['params'] / 1e6:.1f}M-parameter MLP, median of {args.step_steps}: "
                "fp32 DDP (all-reduce, SGD) / DDP with the signSGD majority-vote hook (Signum)",
                ours=step["median_ms"]["signsgd_ddp"],
                anchor=step["median_ms"]["fp32_ddp"],
                unit="ms",
                better="lower",
                target=1.0,
            )
        )
    path = write_results("signsgd_comm", claims, details)
    print(f"wrote {path}")
    for c in claims:
        print(c["id"], round(c["ratio"], 2), "met" if c.get("met") else "NOT met")


if __name__ == "__main__":
    main()
