"""Projection jobs on the `generate` queue: the images a user uploaded (POST /runs/{id}/projections) projected into a
stylegan2 checkpoint's W space by core.projection. They run as generations and scores do (worker/generations.py:
run_job); the API stored the normalised inputs in the job's `input/` folder (`images.npy`, `names.json`). The
distance is pixel MSE plus the run's discriminator's features, plus the digits classifier's on a run trained on
digits or stacked-digits. The result is `result.zip`: a PNG per input named as it, `latents.npz` and
`projection.json`."""

from __future__ import annotations

import json

from core.device import pick_device
from store import layout
from store.artifacts import fetch_folder, get_storage
from store.settings import get_settings
from worker.celery_app import app
from worker.generations import SOFT_TIME_LIMIT, Done, Job, cached, run_job

# The runs whose images the shipped digits classifier knows.
DIGITS_DATASETS = ("digits", "stacked-digits")


def _project(job: Job) -> Done:
    from core import projection, scoring, uploads
    from core.metrics.classifier import load_digits_classifier

    request = job.request
    scorer = cached("scorer", run_id=job.run_id, step=job.step, ema=request["ema"], path=job.checkpoint)
    settings, storage = get_settings(), get_storage()
    input_dir = job.out_dir / "input"
    if not settings.artifacts_are_local:  # the API stored the inputs with the job's files
        fetch_folder(storage, prefix=layout.job_prefix(job.run_id, job.id) + "input/", folder=input_dir)
    images, _, _ = uploads.read_images(input_dir)  # (N, S, S, C) uint8
    names: list[str] = json.loads((input_dir / "names.json").read_text())
    device = pick_device("auto")
    x = scoring.prepare_images(
        images, channels=int(scorer.data_info["channels"]), image_size=scorer.cfg.model.image_size
    )  # (N, C, H, W) in [-1, 1]
    classifier = load_digits_classifier(device=device) if scorer.cfg.dataset in DIGITS_DATASETS else None
    distance = projection.Distance(discriminator=scorer.discriminator, classifier=classifier)
    result = projection.project(
        scorer.generator,
        x,
        steps=request["steps"],
        space=request["space"],
        distance=distance,
        seed=request["seed"],
        device=device,
    )
    path = projection.write_result(
        result,
        names,
        job.out_dir / "result.zip",
        extra={"id": job.id, "run_id": job.run_id, "checkpoint_step": job.step},
    )
    request["distance"] = result.distance
    return Done(result=path, media_type="application/zip", count=len(names))


@app.task(name="ganforge.project", soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def project(projection_id: str) -> None:
    """Project the job's uploaded images into a stylegan2 checkpoint's W space: latents and reconstructions."""
    run_job(projection_id, "project", _project)
