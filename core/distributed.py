"""Data-parallel training on one host: `train.world_size` processes (ranks) train one run together.

`launch` (called by `core.train.train` when world_size > 1) starts the ranks as child processes, each of which
calls `train` again inside a process group: NCCL with one GPU per rank on CUDA, gloo on the CPU, rendezvous
on a free loopback port. The calling process relays rank 0's events to `on_event`, asks the ranks to stop when
`should_stop()` says so, and returns rank 0's result; a rank's ValueError or TrainingDiverged is raised again here
with its message.

Inside a rank (`current()` is not None) the loop (core/train.py) differs in a few places:
- G and D are wrapped in `GanDDP` (DistributedDataParallel), so each backward pass averages the gradients over the
  ranks: every rank holds the same weights after every optimizer step. The networks the loop keeps (`Models.G`,
  `Models.D`, the EMA copy) stay the plain modules; only the family's `g_fn`/`d_fn` call through the wrappers.
- A GAN step calls D in G's step with D's parameters frozen, and G under no_grad when D takes several steps: a DDP
  forward whose parameters get no gradient would leave its reducer waiting ("Expected to have finished reduction in
  the prior iteration"), so `GanDDP` calls the plain module whenever no parameter of it can receive a gradient,
  instead of find_unused_parameters (an extra graph traversal every step) or no_sync.
- The global batch stays `train.batch_size`: every rank draws the same global batch from the one data order and
  takes its own disjoint slice (batch_size / world_size samples); the family's step sees the per-rank batch size.
  Its losses are means over the slice, so the averaged gradients are those of the global batch's mean loss.
- The ranks' random numbers (latents, fake labels, augmentations) come from `torch.manual_seed` of (seed, step,
  rank) at every step, so a resume with the same world size draws exactly what the interrupted run would have.
  A resume with another world size continues from the same weights, optimizer state and data order, but slices
  the batch and draws the latents differently: it is not bit-exact.
- BatchNorm: on CUDA it becomes SyncBatchNorm (statistics over the global batch). PyTorch's SyncBatchNorm runs on
  GPUs only, so on the CPU each rank normalizes with its own slice's statistics and DDP broadcasts rank 0's
  running statistics at each forward (broadcast_buffers).
- Each step the ranks gather one small tensor: the losses (averaged, so that the divergence check and the
  reports agree on every rank), the stop flag (so that every rank stops at the same step) and a fingerprint of
  the weights (every step on the CPU, at the reporting steps on a GPU), which must be the same on every rank:
  ReplicasDiverged otherwise. `TrainResult.replica_checks` counts the steps so compared.
- Only rank 0 writes files (config, run info, grids, checkpoints) and emits events; it alone evaluates. With a
  `may_write` fence, rank 0 asks the launching process before each grid and checkpoint (a line on its pipe, the
  answer on its stdin); on a refusal the launcher kills every rank at once, so nothing more is written, and
  returns a stopped result.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.train import TrainResult

EventFn = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Rank:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    backend: str  # "nccl" | "gloo"

    @property
    def lead(self) -> bool:
        return self.rank == 0


_current: Rank | None = None


def current() -> Rank | None:
    """This process's rank in a data-parallel run; None in a single-process run."""
    return _current


class GanDDP(DistributedDataParallel):
    """DistributedDataParallel for one network of a GAN: a forward pass in which none of the module's parameters can
    receive a gradient (D in G's step, G under no_grad) goes to the plain module, so that the reducer only ever
    waits for the backward passes that reach it."""

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(p.requires_grad for p in self.module.parameters()):
            return self.module(*inputs, **kwargs)
        return super().forward(*inputs, **kwargs)  # type: ignore[no-untyped-call]


def wrap_models(models: Any, device: torch.device) -> None:
    """Make the family's step call G and D (`g_fn`, `d_fn`) through DistributedDataParallel on `device`; the loop
    keeps the plain modules (`models.G`, `models.D`) for grids, evaluation and checkpoints."""
    ids = [device.index] if device.type == "cuda" else None
    # broadcast_buffers (the default): rank 0's BatchNorm statistics at each forward pass.
    models.g_fn, models.d_fn = GanDDP(models.G, device_ids=ids), GanDDP(models.D, device_ids=ids)


def sync_batchnorm(models: Any, device: torch.device) -> None:
    """BatchNorm over the global batch on CUDA: G's and D's BatchNorm layers become SyncBatchNorm, keeping their
    parameters (so the optimizers built on them still hold them). Nothing on the CPU, where PyTorch has no
    SyncBatchNorm."""
    if device.type == "cuda":
        convert = nn.SyncBatchNorm.convert_sync_batchnorm
        models.G, models.D = convert(models.G), convert(models.D)  # type: ignore[no-untyped-call]


def seed_step(seed: int, step: int, rank: Rank) -> None:
    """Seed torch for one step of one rank: a function of (seed, step, rank) only, so that a resume draws the same."""
    torch.manual_seed((seed * 1_000_003 + step) * rank.world_size + rank.rank)


class ReplicasDiverged(RuntimeError):
    """The ranks' weights differ after a step: their gradients were not averaged the same way (a bug, never data)."""


@torch.no_grad()
def fingerprint(modules: list[nn.Module]) -> torch.Tensor:
    """A float64 scalar that differs between two ranks whose weights differ: the parameters' sums and norms,
    weighted by their position."""
    # One parameter at a time in float64, so that no copy of all the weights is ever held.
    doubled = (p.detach().double() for m in modules for p in m.parameters())
    per_param = torch.stack([torch.stack([q.sum(), q.norm()]) for q in doubled])  # (P, 2)
    position = torch.arange(1, per_param.shape[0] + 1, dtype=torch.float64, device=per_param.device)
    return (per_param * position[:, None]).sum()


def agree(
    losses: dict[str, torch.Tensor], stop: bool, weights: torch.Tensor | None, *, step: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], bool]:
    """Gather every rank's losses, stop flag and weight fingerprint (`weights`, or None when not checked this step)
    in one collective; return the losses' mean over the ranks and whether any rank stops. ReplicasDiverged when the
    fingerprints differ."""
    names = sorted(losses)
    mine = [losses[n].detach().double().reshape(()).to(device) for n in names]
    check = weights if weights is not None else torch.zeros((), dtype=torch.float64, device=device)
    mine += [torch.tensor(float(stop), dtype=torch.float64, device=device), check.to(device)]
    vector = torch.stack(mine)  # (L + 2,)
    gathered = [torch.empty_like(vector) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, vector)
    every = torch.stack(gathered)  # (R, L + 2)
    if weights is not None and not bool((every[:, -1] == every[0, -1]).all()):
        raise ReplicasDiverged(f"the data-parallel ranks' weights differ after step {step}: {every[:, -1].tolist()}")
    means = every[:, :-2].mean(dim=0).float()
    return {n: means[i] for i, n in enumerate(names)}, bool(every[:, -2].max() > 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    cfg: RunConfig,
    *,
    out_dir: Path,
    on_event: EventFn | None,
    should_stop: Callable[[], bool] | None,
    dataset_dir: Path | str | None,
    may_write: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `cfg` in `cfg.train.world_size` processes on this host and return rank 0's result.

    The ranks are fresh interpreters (`python -m core.distributed`, safe with CUDA, and free of the restrictions a
    task queue's pool puts on multiprocessing), children of this process: each reads its part from stdin and writes
    JSON lines to a pipe of its own (rank 0 its events and result; any rank its error). This process asks rank 0 to
    stop with SIGUSR1; the ranks agree on it at the next step. `may_write` is asked for rank 0 (see the module's
    docstring)."""
    from core.train import TrainingDiverged, TrainResult

    world = cfg.train.world_size
    port = free_port()
    spec = {
        "cfg": cfg.model_dump(mode="json"),
        "out_dir": str(out_dir),
        "dataset_dir": dataset_dir and str(dataset_dir),
        "fenced": may_write is not None,
    }
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    ranks: list[subprocess.Popen[bytes]] = []
    readers: list[threading.Thread] = []
    try:
        for rank in range(world):
            read_fd, write_fd = os.pipe()
            env = {
                **os.environ,
                "GANFORGE_RANK": str(rank),
                "GANFORGE_WORLD_SIZE": str(world),
                "GANFORGE_RANK_PORT": str(port),
                "GANFORGE_RANK_PARENT": str(os.getpid()),
                "GANFORGE_RANK_PIPE": str(write_fd),
                # This process's intra-op threads (a worker's share of its host) shared between the ranks.
                "GANFORGE_RANK_THREADS": str(max(1, torch.get_num_threads() // world)),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "core.distributed"], stdin=subprocess.PIPE, env=env, pass_fds=(write_fd,)
            )
            os.close(write_fd)
            ranks.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(spec).encode() + b"\n")
            process.stdin.flush()
            if rank > 0 or may_write is None:  # rank 0's stays open for the fence's answers
                process.stdin.close()
            reader = threading.Thread(target=_read_lines, args=(read_fd, rank, lines), daemon=True)
            reader.start()
            readers.append(reader)

        result: dict[str, Any] | None = None
        error: dict[str, str] | None = None
        asked_to_stop = failed = fenced_out = False
        open_pipes = world
        while open_pipes:  # a rank closes its pipe when it is done (or the system does, when it died)
            with contextlib.suppress(queue.Empty):
                rank, line = lines.get(timeout=0.2)
                if line is None:
                    open_pipes -= 1
                else:
                    kind, data = json.loads(line)
                    if kind == "_may_write" and may_write is not None:
                        if may_write():
                            _answer(ranks[0], b"1\n")
                        else:  # the run is another worker's now: stop every rank before it writes anything
                            fenced_out = True
                            for p in ranks:
                                p.kill()
                            result = {
                                "status": "stopped",
                                "step": int(data["step"]),
                                "device": str(data["device"]),
                                "precision": str(data["precision"]),
                                "checkpoint": None,
                                "message": "the run's lease was lost: another worker holds it",
                            }
                    elif kind == "_result":
                        result = data
                    elif kind == "_error":
                        error = error or data  # the first rank's: the others' may only follow from it
                    elif on_event is not None:
                        on_event(kind, data)
            if should_stop is not None and not asked_to_stop and should_stop():
                asked_to_stop = True
                with contextlib.suppress(ProcessLookupError):
                    ranks[0].send_signal(signal.SIGUSR1)
            if not failed and not fenced_out and any(p.poll() not in (None, 0) for p in ranks):
                failed = True  # the others would wait for it in their next collective
                for p in ranks:
                    if p.poll() is None:
                        p.kill()
    finally:
        for p in ranks:  # what is left of a rank after it closed its pipe is the interpreter's teardown
            if p.stdin is not None and not p.stdin.closed:
                with contextlib.suppress(OSError):
                    p.stdin.close()
            if p.poll() is None:
                p.kill()
            p.wait()
    if fenced_out and result is not None:
        return TrainResult(**result)
    if error is not None:
        if error["type"] == "TrainingDiverged":
            raise TrainingDiverged(error["message"])
        if error["type"] == "ValueError":
            raise ValueError(error["message"])
        raise RuntimeError(f"a training process failed: {error['type']}: {error['message']}")
    if result is None:
        codes = [p.returncode for p in ranks]
        raise RuntimeError(f"the training processes ended without a result (exit codes {codes})")
    return TrainResult(**result)


def _answer(process: subprocess.Popen[bytes], line: bytes) -> None:
    """Write the fence's answer to rank 0's stdin; a rank that died meanwhile is seen by the launcher's loop."""
    assert process.stdin is not None
    with contextlib.suppress(OSError):
        process.stdin.write(line)
        process.stdin.flush()


def _read_lines(fd: int, rank: int, lines: queue.Queue[tuple[int, str | None]]) -> None:
    """Put each line a rank writes on its pipe into `lines`, then (rank, None) at its end."""
    with os.fdopen(fd, "r", encoding="utf-8") as pipe:
        for line in pipe:
            lines.put((rank, line))
    lines.put((rank, None))


def _die_with_parent(parent: int) -> None:
    """A rank dies with the process that launched it (a killed worker leaves no rank training), and leaves SIGTERM
    and SIGINT to it: it stops the ranks at a step boundary, with a checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


def rank_main() -> None:
    """One rank (`python -m core.distributed`, started by `launch`): join the process group, train, and write rank
    0's events and result, or any rank's error, as JSON lines to its pipe."""
    global _current
    rank, world = int(os.environ["GANFORGE_RANK"]), int(os.environ["GANFORGE_WORLD_SIZE"])
    _die_with_parent(int(os.environ["GANFORGE_RANK_PARENT"]))
    pipe = os.fdopen(int(os.environ["GANFORGE_RANK_PIPE"]), "w", encoding="utf-8", buffering=1)
    stop = threading.Event()
    if rank == 0:
        signal.signal(signal.SIGUSR1, lambda _signum, _frame: stop.set())

    def send(kind: str, data: dict[str, Any]) -> None:
        pipe.write(json.dumps([kind, data]) + "\n")

    from core.config import RunConfig
    from core.device import pick_device
    from core.train import train

    try:
        spec = json.loads(sys.stdin.readline())
        cfg = RunConfig.model_validate(spec["cfg"])
        cuda = pick_device(cfg.train.device).type == "cuda"
        if cuda:
            if torch.cuda.device_count() < world:
                raise ValueError(
                    f"train.world_size: {world} processes need {world} GPUs; this host has {torch.cuda.device_count()}"
                )
            torch.cuda.set_device(rank)
        backend = "nccl" if cuda else "gloo"
        torch.set_num_threads(int(os.environ["GANFORGE_RANK_THREADS"]))
        port = os.environ["GANFORGE_RANK_PORT"]
        # Rank 0 evaluates and writes checkpoints while the others wait in their next collective: give it an hour.
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(hours=1)
        )
        _current = Rank(rank=rank, world_size=world, backend=backend)
        device, precision = str(pick_device(cfg.train.device)), cfg.train.precision
        step_now = [0]

        def ask_launcher() -> bool:
            """Rank 0's fence: the launching process answers from the worker's lease (1), or kills the ranks."""
            send("_may_write", {"step": step_now[0], "device": device, "precision": precision})
            return sys.stdin.readline().strip() == "1"

        def relay(kind: str, data: dict[str, Any]) -> None:
            step_now[0] = int(data.get("step", step_now[0]))
            send(kind, data)

        result = train(
            cfg,
            out_dir=Path(spec["out_dir"]),
            on_event=relay if rank == 0 else None,
            should_stop=stop.is_set,
            dataset_dir=spec["dataset_dir"],
            may_write=ask_launcher if rank == 0 and spec.get("fenced") else None,
        )
        if rank == 0:
            send("_result", vars(result))
    except Exception as exc:
        send("_error", {"type": type(exc).__name__, "message": str(exc)})
        raise
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        pipe.close()


if __name__ == "__main__":  # the module as imported, not this __main__ copy, holds the rank (`current()`)
    from core.distributed import rank_main

    rank_main()
