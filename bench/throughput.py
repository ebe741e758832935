"""Trainer throughput against a plain PyTorch loop of the same networks and batch (## Trainer throughput).

    .venv/bin/python bench/throughput.py                      # every architecture, fp32 and bf16
    .venv/bin/python bench/throughput.py --arch dcgan --precision bf16 --steps 40 --rounds 3

For each case, alternately (to share the machine's noise) runs `core.train.train` and a plain loop written as
pytorch/examples `dcgan/main.py` writes it (index a batch, D on real then on fake, G on the same fake, Adam,
BCE-with-logits, autocast when bf16), with the same networks, batch, data and threads. Times the steps after
`--warmup` steps: the trainer through its per-step `should_stop` call, so that its final grid and checkpoint are
not counted but its per-step bookkeeping (data order, stats, progress events, divergence checks) is. Reports
images/sec (generator samples per second) and the ratio, the median over `--rounds` pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import RunConfig
from core.datasets import load_dataset
from core.networks import build_discriminator, build_generator
from core.train import train

CASES = {
    # arch: the run body that gives the architecture at its default size and batch (dcgan at 32 px and width 32, as
    # the tables in docs/benchmarks.md measured it; the digits default itself is 16 px, width 64)
    "mlp": {"dataset": "ring8"},
    "dcgan": {"dataset": "digits", "model": {"image_size": 32, "width": 32}},
    "resnet": {"dataset": "digits", "model": {"arch": "resnet", "image_size": 32, "width": 16}},
}


def _config(arch: str, precision: str, steps: int, extra: dict) -> RunConfig:
    body = {**CASES[arch], **extra}
    body["train"] = {**body.get("train", {}), "steps": steps, "precision": precision}
    # The plain loop has no packing, EMA or lr schedule: the trainer runs without them too (the defaults of ring8
    # and digits switch EMA on), so that both sides do the same work.
    body["model"] = {**body.get("model", {}), "pack": 1}
    body["train"] |= {"ema": None, "lr_schedule": "constant"}
    body["schedule"] = {"sample_every": 10**6, "checkpoint_every": 10**6}
    return RunConfig.model_validate(body)


def trainer_rate(cfg: RunConfig, warmup: int) -> float:
    """Images/sec of core.train.train over the steps after the warmup."""
    stamps: list[float] = []

    def should_stop() -> bool:
        stamps.append(time.perf_counter())
        return False

    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, out_dir=Path(tmp), should_stop=should_stop)
    timed = stamps[warmup:]
    return (len(timed) - 1) * cfg.train.batch_size / (timed[-1] - timed[0])


def plain_rate(cfg: RunConfig, warmup: int, channels_last: bool) -> float:
    """Images/sec of a plain pytorch/examples-style loop with the same networks, batch and precision."""
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, image_size=cfg.model.image_size)
    x_all = data.data  # (N, ...)
    G = build_generator(cfg, channels=data.channels, num_classes=data.num_classes)
    D = build_discriminator(cfg, channels=data.channels, num_classes=data.num_classes)
    if channels_last and data.kind == "images":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    betas = (cfg.train.beta1, cfg.train.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=betas)
    bf16 = cfg.train.precision == "bf16"
    b = cfg.train.batch_size
    ones, zeros = torch.ones(b), torch.zeros(b)
    stamps = []
    for _ in range(cfg.train.steps):
        real = x_all[torch.randint(len(x_all), (b,))]
        if channels_last and data.kind == "images":
            real = real.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            D.zero_grad()
            err_real = F.binary_cross_entropy_with_logits(D(real)[0].float(), ones)
            fake = G(torch.randn(b, cfg.model.z_dim))
            err_fake = F.binary_cross_entropy_with_logits(D(fake.detach())[0].float(), zeros)
        (err_real + err_fake).backward()
        opt_d.step()
        G.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            err_g = F.binary_cross_entropy_with_logits(D(fake)[0].float(), ones)
        err_g.backward()
        opt_g.step()
        stamps.append(time.perf_counter())
    timed = stamps[warmup:]
    return (len(timed) - 1) * b / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=[*CASES, "all"], default="all")
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plain-channels-last", action="store_true", help="give the plain loop channels_last too")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    archs = list(CASES) if args.arch == "all" else [args.arch]
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    print("| arch | size | batch | precision | plain loop img/s | trainer img/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for arch in archs:
        for precision in precisions:
            if arch == "mlp" and precision == "bf16":
                continue  # 2-D runs train in fp32 (see core.device.pick_precision)
            steps = args.steps * 20 if arch == "mlp" else args.steps  # mlp steps take milliseconds
            cfg = _config(arch, precision, steps, {})
            plain, ours = [], []
            for _ in range(args.rounds):
                warmup = args.warmup * 20 if arch == "mlp" else args.warmup
                plain.append(plain_rate(cfg, warmup, args.plain_channels_last))
                ours.append(trainer_rate(cfg, warmup))
            ratios = [o / p for o, p in zip(ours, plain, strict=True)]
            size = "2-D" if arch == "mlp" else f"{cfg.model.image_size} px"
            print(
                f"| {arch} | {size} | {cfg.train.batch_size} | {precision} | {statistics.median(plain):.0f} | "
                f"{statistics.median(ours):.0f} | {statistics.median(ratios):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
