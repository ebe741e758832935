"""store.limits on configs alone: the problems a worker with a GPU finds in train.device cpu (the operator's
choice), and a model whose one checkpoint is over the disk budget, which names the networks, not the count."""

from __future__ import annotations

from core.config import RunConfig
from store.limits import DataFacts, run_limit_problems
from store.settings import Settings

DIGITS = DataFacts(channels=1, num_classes=10)


def test_cpu_training_on_a_gpu_worker_is_the_operators_choice() -> None:
    cfg = RunConfig.model_validate({"dataset": "digits", "train": {"device": "cpu"}})
    refused = (
        "train.device",
        "train.device: cpu is not allowed on this server's GPU workers (GANFORGE_ALLOW_CPU_ON_GPU); use auto or cuda",
    )
    assert run_limit_problems(cfg, Settings(), DIGITS, on_gpu=True) == [refused]
    assert run_limit_problems(cfg, Settings(allow_cpu_on_gpu=True), DIGITS, on_gpu=True) == []
    assert run_limit_problems(cfg, Settings(), DIGITS, on_gpu=False) == []  # the API, and CPU workers


def test_a_model_over_the_whole_budget_names_the_model() -> None:
    cfg = RunConfig.model_validate({"dataset": "digits", "schedule": {"keep_checkpoints": 1}})
    [(field, message)] = run_limit_problems(cfg, Settings(max_run_bytes=1_000_000), DIGITS)
    assert field == "model"
    assert message == (
        "model: one checkpoint of these networks (0.54 M values in G and D, with the EMA copy and Adam's moments) "
        "takes about 8.08 MB, over this server's disk budget of 1 MB per run (GANFORGE_MAX_RUN_BYTES); use a "
        "smaller model.width or model.image_size"
    )
    # Fewer steps than checkpoint_every · keep_checkpoints write fewer checkpoints: only those count.
    short = RunConfig.model_validate(
        {"dataset": "digits", "train": {"steps": 1000}, "schedule": {"keep_checkpoints": 9}}
    )
    assert run_limit_problems(short, Settings(max_run_bytes=9_000_000), DIGITS) == []
