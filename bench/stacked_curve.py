"""stacked-digits mode coverage along a run: train the default (plus --config), then count the stacked modes of
every kept checkpoint over --n samples (the literature's 26,000) with the digits classifier, one digit per channel,
and the KL of each channel's digit histogram to uniform beside the joint KL (## Trainer quality).

    .venv/bin/python bench/stacked_curve.py --seed 1 --every 10000
    .venv/bin/python bench/stacked_curve.py --config '{"model": {"spectral_norm": false}, "train": {"steps": 10000}}'
    .venv/bin/python bench/stacked_curve.py --real   # the same counts over real stacked-digits images: the floor

Each checkpoint is read with its EMA generator; the last one also with the raw generator (`"ema": false`).
conf_mean is the classifier's mean top probability on the generated digits (0.986 on real 16 px digits). train_min is
the training's wall-clock minutes, train_cpu_min the process's CPU minutes over the same span.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.checkpoint import load_generator
from core.config import RunConfig
from core.datasets import load_dataset
from core.metrics.classifier import load_digits_classifier
from core.metrics.modes import label_metrics, stacked_mode_ids
from core.train import train


def generated(ckpt, z_dim, seed=10_000, ema=True):
    """A draw(b) of b images from the checkpoint's generator."""
    G, _, _ = load_generator(ckpt, ema=ema)
    gen = torch.Generator().manual_seed(seed)
    return lambda b: G(torch.randn(b, z_dim, generator=gen))


def real_images(image_size, seed=10_000):
    """A draw(b) of b real stacked-digits images from the training triples: the floor of the counts."""
    real = load_dataset("stacked-digits", image_size=image_size)
    gen = torch.Generator().manual_seed(seed)
    return lambda b: real.batch(torch.randint(len(real), (b,), generator=gen))[0]


@torch.no_grad()
def evaluate(draw, n, clf):
    """Stacked modes, KL to uniform and classifier confidence over n images of draw(b)."""
    digits, conf = [], []
    for s in range(0, n, 1000):
        b = min(1000, n - s)
        x = draw(b).float()
        bb, c, h, w = x.shape
        logits = clf(x.reshape(bb * c, 1, h, w))
        pr = logits.softmax(1)
        digits.append(pr.argmax(1).reshape(bb, c))
        conf.append(pr.max(1).values.reshape(bb, c))
    d = torch.cat(digits)
    cf = torch.cat(conf)
    modes = stacked_mode_ids(d)
    joint = label_metrics(modes, 1000)
    return {
        "modes": int(joint["covered"]),
        "kl": round(joint["kl"], 4),
        "marg_kl": [round(label_metrics(d[:, i], 10)["kl"], 4) for i in range(3)],
        "conf_mean": round(float(cf.mean()), 3),
        "conf<0.9": round(float((cf < 0.9).float().mean()), 3),
        "max_count": int(torch.bincount(modes).max()),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="{}", help="JSON layered over the stacked-digits defaults")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2500, help="checkpoint (and count) every this many steps")
    ap.add_argument("--n", type=int, default=26000, help="generated images per count")
    ap.add_argument("--label", default="", help="a name printed with each row")
    ap.add_argument("--real", action="store_true", help="count --n real images instead (the floor) and stop")
    a = ap.parse_args()
    torch.set_num_threads(1)
    over = json.loads(a.config)
    cfg = RunConfig.model_validate({"dataset": "stacked-digits", "seed": a.seed, **over})
    if a.real:
        draw = real_images(cfg.model.image_size, seed=10_000 + a.seed)
        print(json.dumps({"label": "real", "seed": a.seed, **evaluate(draw, a.n, load_digits_classifier().eval())}))
        sys.exit(0)
    cfg = cfg.model_copy(
        update={
            "schedule": cfg.schedule.model_copy(
                update={"sample_every": 10**6, "eval_every": 0, "checkpoint_every": a.every, "keep_checkpoints": 1000}
            )
        }
    )
    clf = load_digits_classifier().eval()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        train(cfg, out_dir=Path(tmp))
        minutes = (time.perf_counter() - t0) / 60
        cpu_minutes = (time.process_time() - c0) / 60
        cks = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))
        for ck in cks:
            for ema in (True, False) if ck == cks[-1] else (True,):
                r = evaluate(generated(ck, cfg.model.z_dim, ema=ema), a.n, clf)
                print(
                    json.dumps(
                        {
                            "label": a.label,
                            "seed": a.seed,
                            "step": int(ck.stem),
                            "ema": ema,
                            **r,
                            "train_min": round(minutes, 1),
                            "train_cpu_min": round(cpu_minutes, 1),
                        }
                    ),
                    flush=True,
                )
