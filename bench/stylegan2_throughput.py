"""StyleGAN2 training throughput: ganforge's loop against a plain PyTorch loop of the same networks and losses
(docs/benchmarks.md, "StyleGAN2 throughput"; goal: ≥ 0.97).

    OMP_NUM_THREADS=1 .venv/bin/python bench/stylegan2_throughput.py --steps 52 --warmup 4 --rounds 3

The trainer side is `core.train.train` on the stylegan2 defaults for digits at `--size` px (width 16, mapping 2,
batch 16, style mixing 0.9, lazy path-length regularization every 4 steps on half a batch, lazy R1 every 16, the EMA
generator at a 10k-image half-life, fp32) without the digits recipe's cluster conditioning and diversity term, which
the plain loop does not have (`model.clusters` 0, `loss.diversity` 0), so that both sides do the same work; sample
grids and checkpoints only at the end, which is not timed. The
plain side is written here as pytorch/examples and stylegan2-ada-pytorch's training loop write it: the same G and D
modules (core.networks_stylegan2, built by the same functions, channels-last as ganforge builds them), Adam with the
lazy regularizers' lr and betas adjustment, the same four phases in the same order with the same batch sizes and
intervals, a random real batch indexed from the dataset tensor, and the EMA as a per-parameter lerp.

Each round runs the plain loop, then the trainer, in one process and thread (`--threads`). Rates are images per
second of process CPU time (user + system, `time.process_time`) over the steps after `--warmup`, the same step
indices on both sides, so the same regularizer steps are counted; the machine is shared, and CPU time does not count
the time other processes took. Prints the median of each side and of the per-round ratios, and the load average.
"""

from __future__ import annotations

import argparse
import math
import os
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
from core.networks_stylegan2 import build_discriminator, build_generator
from core.train import train


def _config(size: int, steps: int) -> RunConfig:
    body: dict = {
        "dataset": "digits",
        "model": {"arch": "stylegan2", "image_size": size, "clusters": 0},
        "loss": {"diversity": 0.0},
        "train": {"steps": steps, "precision": "fp32", "device": "cpu"},
        "schedule": {"sample_every": 10**6, "checkpoint_every": 10**6},
    }
    return RunConfig.model_validate(body)


def trainer_rate(cfg: RunConfig, warmup: int) -> float:
    """Images per CPU second of core.train.train over the steps after the warmup (stamped in should_stop, which
    the loop calls once per step before its final grid and checkpoint)."""
    stamps: list[float] = []

    def should_stop() -> bool:
        stamps.append(time.process_time())
        return False

    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, out_dir=Path(tmp), should_stop=should_stop)
    timed = stamps[warmup:]
    return (len(timed) - 1) * cfg.train.batch_size / (timed[-1] - timed[0])


def plain_rate(cfg: RunConfig, warmup: int) -> float:
    """Images per CPU second of a plain loop of the same networks, losses, regularizers and EMA."""
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, image_size=cfg.model.image_size)
    x_all = data.data  # (N, C, H, W)
    G = build_generator(cfg, channels=data.channels, num_classes=0).to(memory_format=torch.channels_last)
    D = build_discriminator(cfg, channels=data.channels, num_classes=0).to(memory_format=torch.channels_last)
    G_ema = build_generator(cfg, channels=data.channels, num_classes=0).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    t, loss = cfg.train, cfg.loss
    g_ratio, d_ratio = loss.pl_every / (loss.pl_every + 1), loss.r1_every / (loss.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g * g_ratio, betas=(t.beta1**g_ratio, t.beta2**g_ratio))
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d * d_ratio, betas=(t.beta1**d_ratio, t.beta2**d_ratio))
    b, z_dim, num_ws = t.batch_size, cfg.model.z_dim, G.num_ws
    ema_beta = t.ema_decay or 0.0
    pl_mean = torch.zeros(())

    def mixed_ws(n: int, update_w_avg: bool = False) -> torch.Tensor:
        """Style mixing per sample, as ganforge mixes (stylegan2-ada draws one cutoff per batch)."""
        w = G.mapping(torch.randn(n, z_dim), None, update_w_avg=update_w_avg)  # (n, W)
        w2 = G.mapping(torch.randn(n, z_dim), None)
        cutoff = torch.randint(1, num_ws, (n,))
        cutoff = torch.where(torch.rand(n) < cfg.model.mixing_prob, cutoff, num_ws)
        first = torch.arange(num_ws)[None, :] < cutoff[:, None]  # (n, L)
        return torch.where(first[:, :, None], w[:, None], w2[:, None])  # (n, L, W)

    stamps = []
    for step in range(1, t.steps + 1):
        # G: the nonsaturating logistic loss.
        D.requires_grad_(False)
        fake = G.synthesis(mixed_ws(b, update_w_avg=True))
        loss_g = F.softplus(-D(fake)[0]).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # G: lazy path-length regularization on half a batch.
        if step % loss.pl_every == 0:
            ws = mixed_ws(b // 2)
            images = G.synthesis(ws)
            y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
            (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            mean = pl_mean.lerp(lengths.mean(), 0.01)
            pl_mean = mean.detach()
            opt_g.zero_grad(set_to_none=True)
            ((lengths - mean).square().mean() * loss.pl_weight * loss.pl_every).backward()
            opt_g.step()
        # D: the logistic loss on fresh fakes and a real batch.
        D.requires_grad_(True)
        real = x_all[torch.randint(len(x_all), (b,))].contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            fake = G.synthesis(mixed_ws(b))
        loss_d = F.softplus(D(fake)[0]).mean() + F.softplus(-D(real)[0]).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # D: lazy R1 on the same reals.
        if step % loss.r1_every == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x)[0].sum(), x, create_graph=True)
            opt_d.zero_grad(set_to_none=True)
            (grad.square().sum((1, 2, 3)).mean() * (loss.r1_gamma / 2) * loss.r1_every).backward()
            opt_d.step()
        # The EMA generator, with its ramp over the first steps as ganforge's.
        with torch.no_grad():
            beta = min(ema_beta, (1.0 + step) / (10.0 + step))
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, buf in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(buf)
        stamps.append(time.process_time())
    timed = stamps[warmup:]
    return (len(timed) - 1) * b / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=52, help="steps per run, warmup included")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = _config(args.size, args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    plain, ours = [], []
    for i in range(args.rounds):
        plain.append(plain_rate(cfg, args.warmup))
        ours.append(trainer_rate(cfg, args.warmup))
        print(f"round {i}: plain {plain[-1]:.1f} img/CPU-s, trainer {ours[-1]:.1f}, load {os.getloadavg()}", flush=True)
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    print(
        f"| {args.size} px | {cfg.train.batch_size} | {statistics.median(plain):.1f} | {statistics.median(ours):.1f} "
        f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |"
    )


if __name__ == "__main__":
    main()
