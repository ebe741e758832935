"""Translation jobs on the `generate` queue: a pix2pix, cyclegan or srgan checkpoint applied to the images a user
uploaded (POST /runs/{id}/translations). They run as generations and scores do (worker/generations.py: run_job);
the API stored the normalised inputs in the job's `input/` folder: `images.npy` and `names.json` from a ZIP, or
`inputs.npy` (float32 (N, C, H, W)) from an npz. The result is `result.zip` (a PNG per input, named as it) or
`result.npz`, and `pairs.png` (the first input → output pairs, for the dashboard)."""

from __future__ import annotations

import json

import numpy as np
import torch

from core.device import pick_device
from store import layout
from store.artifacts import fetch_folder, get_storage
from store.settings import get_settings
from worker.celery_app import app
from worker.generations import SMALL_JOB_SAMPLES, SOFT_TIME_LIMIT, Done, Job, cached, run_job, torch_threads

MEDIA_TYPES = {"zip": "application/zip", "npz": "application/octet-stream"}


def _translate(job: Job) -> Done:
    from core import translate as tr
    from core import uploads

    request = job.request
    translator = cached("translator", run_id=job.run_id, step=job.step, ema=request["ema"], path=job.checkpoint)
    settings, storage = get_settings(), get_storage()
    input_dir = job.out_dir / "input"
    if not settings.artifacts_are_local:  # the API stored the inputs with the job's files
        fetch_folder(storage, prefix=layout.job_prefix(job.run_id, job.id) + "input/", folder=input_dir)
    if request["source"] == "npz":
        x = torch.from_numpy(np.load(input_dir / "inputs.npy", allow_pickle=False))  # (N, C, H, W)
        names: list[str] = []
    else:
        images, _, _ = uploads.read_images(input_dir)  # (N, S, S, C) uint8
        x = tr.images_to_tensor(images)
        names = json.loads((input_dir / "names.json").read_text())
    direction = request["direction"]
    with torch_threads(1 if len(x) <= SMALL_JOB_SAMPLES else None):
        inputs = tr.prepare_inputs(translator, x, direction=direction)
        # Jobs queued before the seed was a field have none: theirs was 0.
        seed = int(request.get("seed", 0))
        outputs = tr.translate(translator, inputs, direction=direction, device=pick_device("auto"), seed=seed)
    fmt = request["source"]
    if fmt == "npz":
        result = tr.write_outputs_npz(outputs, job.out_dir / "result.npz")
    else:
        result = tr.write_zip(outputs, names, job.out_dir / "result.zip")
    tr.write_pairs(inputs, outputs, job.out_dir / "pairs.png")
    return Done(result=result, media_type=MEDIA_TYPES[fmt], count=len(outputs))


@app.task(name="ganforge.translate", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def translate(translation_id: str) -> None:
    """Translate the job's uploaded images with a run's checkpoint into a ZIP of PNGs (or an npz)."""
    run_job(translation_id, "translate", _translate)
