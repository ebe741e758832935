"""The ctgan family through core: config checks, exact resume with EMA, evaluation, sampling from a checkpoint with
conditions, and the table metrics."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from core import checkpoint
from core.config import RunConfig
from core.families.ctgan import load_table_generator, sample_rows
from core.tabular.columns import Column
from core.tabular.data import builtin_dataset, table_dataset
from core.tabular.io import read_csv, write_csv
from core.tabular.metrics import dcr_ratio, ks_complement, ml_efficacy, quality, tv_complement
from core.train import train
from tests.utils.training import assert_resume_matches, checkpoint_tensors, run_events, tensors_that_differ

N, K = 6, 3
TINY = {
    "dataset": "wine",
    "model": {"width": 16, "z_dim": 8, "pack": 2},
    "train": {"steps": N, "batch_size": 20, "ema": 0.9, "precision": "fp32", "device": "cpu"},
}


def test_tables_default_to_ctgan_and_refuse_image_architectures_and_the_reverse():
    cfg = RunConfig.model_validate({"dataset": "wine"})
    assert (cfg.model.arch, cfg.model.pack, cfg.loss.kind, cfg.train.batch_size) == ("ctgan", 10, "wgan-gp", 200)
    assert cfg.data_kind == "table"
    uploaded = RunConfig.model_validate({"dataset": "tbl_0123abcd", "table": {"columns": {"n": "categorical"}}})
    assert (uploaded.model.arch, uploaded.model.pack, uploaded.data_kind) == ("ctgan", 10, "table")
    for preset in ("wgan-gp", "sngan-hinge"):
        assert RunConfig.model_validate({"dataset": "wine", "preset": preset}).model.arch == "ctgan"
    refused = [
        ({"dataset": "wine", "model": {"arch": "dcgan"}}, "model.arch: wine is a table; only the ctgan architecture"),
        ({"dataset": "wine", "preset": "dcgan"}, "model.arch: wine is a table"),
        ({"dataset": "digits", "model": {"arch": "ctgan"}}, "model.arch: ctgan synthesizes table rows, and digits is"),
        ({"dataset": "ds_0123abcd", "model": {"arch": "ctgan"}}, "and ds_0123abcd is an image dataset"),
        ({"dataset": "tbl_0123abcd", "model": {"arch": "dcgan"}}, "model.arch: tbl_0123abcd is a table"),
        ({"dataset": "ds_0123abcd", "table": {"target": "y"}}, "table: ds_0123abcd is not an uploaded table"),
        ({"dataset": "ring8", "model": {"arch": "ctgan"}}, "ring8 is 2-D point data"),
        ({"dataset": "wine", "model": {"conditional": True}}, "model.conditional: ctgan conditions on every"),
        ({"dataset": "wine", "train": {"diffaugment": "color"}}, "train.diffaugment: DiffAugment works on images"),
        ({"dataset": "mixed", "model": {"pack": 3}}, "model.pack: train.batch_size (500) must be a multiple of pack"),
    ]
    for body, message in refused:
        with pytest.raises(ValidationError) as info:
            RunConfig.model_validate(body)
        assert message in str(info.value), body


def test_ctgan_steps_follow_the_table_rows_unless_steps_are_chosen():
    """train.epochs (375) over the training rows in batches of 500, or of half the training rows (200 to 500, a
    multiple of pack) on a small table, within 750 to 10,000 steps; the stored config holds the steps alone, and
    validating it again keeps them (a resumed run's steps and batch stay as given)."""

    def train(body: dict[str, Any]) -> tuple[int, int, float | None, int]:
        cfg = RunConfig.model_validate(body)
        assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg
        return cfg.train.steps, cfg.train.batch_size, cfg.train.epochs, cfg.schedule.eval_every

    # wine: 142 training rows, batch 200, 267 steps raised to 750; breast-cancer: 455, batch 220 (227 down to a
    # multiple of pack 10), 776 steps; mixed: 4,000, batch 500, 3,000 steps (3,600 with the large tables' 450 epochs).
    assert train({"dataset": "wine"}) == (750, 200, None, 500)
    assert train({"dataset": "breast-cancer"}) == (776, 220, None, 500)
    assert train({"dataset": "breast-cancer", "model": {"pack": 16}}) == (762, 224, None, 500)
    assert train({"dataset": "mixed", "model": {"gumbel_input": False}}) == (3000, 500, None, 500)
    assert train({"dataset": "credit", "model": {"gumbel_input": True}}) == (3000, 500, None, 500)
    assert train({"dataset": "mixed", "model": {"gumbel_input": False}, "train": {"batch_size": 250}}) == (
        6000,
        250,
        None,
        500,
    )
    assert train({"dataset": "breast-cancer", "train": {"batch_size": 400}}) == (750, 400, None, 500)
    assert train({"dataset": "mixed", "train": {"epochs": 1000}}) == (8000, 500, None, 500)
    assert train({"dataset": "mixed", "train": {"steps": 40}}) == (40, 500, None, 500)
    assert train({"dataset": "mixed", "train": {"steps": 40, "epochs": 100}}) == (800, 500, None, 500)
    few = {"dataset": "mixed", "train": {"epochs": 50}, "schedule": {"eval_every": 1000}}
    assert train(few) == (750, 500, None, 750)  # evaluated once, at the end
    # An uploaded table: the epochs wait for the rows, which POST /runs fills in from the dataset (validating the
    # config's dump again, where the tables' batch of 500 still scales).
    assert train({"dataset": "tbl_0123abcd"}) == (3000, 500, 375, 500)
    waiting = RunConfig.model_validate({"dataset": "tbl_0123abcd"}).model_dump()
    assert train(waiting | {"table": {"rows": 1000}}) == (750, 400, None, 500)
    assert train({"dataset": "tbl_0123abcd", "table": {"rows": 1000}}) == (750, 400, None, 500)
    assert train({"dataset": "tbl_0123abcd", "table": {"rows": 10**7}}) == (10_000, 500, None, 500)
    assert train({"dataset": "tbl_0123abcd", "train": {"steps": 7}, "table": {"rows": 1000}}) == (7, 500, None, 500)
    with pytest.raises(ValidationError, match=r"train\.epochs: only ctgan counts passes over a table.s rows"):
        RunConfig.model_validate({"dataset": "digits", "train": {"epochs": 3}})


def test_a_null_gumbel_input_is_decided_by_the_tables_training_rows_with_the_large_tables_epochs_and_pack():
    """model.gumbel_input null: on where the training rows keep the full batch of 500 (1,000 of them or more), where
    train.epochs left at 375 become 450 and model.pack left at 10 becomes 5; off on a smaller table, whose schedule
    and pack stay as they were. A choice is kept, an uploaded table's waits for its rows, and the stored config holds
    the decision, which validating it again keeps."""

    def decided(body: dict[str, Any]) -> tuple[bool | None, int, int, float | None, int]:
        cfg = RunConfig.model_validate(body)
        assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg
        return cfg.model.gumbel_input, cfg.train.steps, cfg.train.batch_size, cfg.train.epochs, cfg.model.pack

    assert decided({"dataset": "credit"}) == (True, 3600, 500, None, 5)
    assert decided({"dataset": "mixed"}) == (True, 3600, 500, None, 5)
    assert decided({"dataset": "wine"}) == (False, 750, 200, None, 10)
    assert decided({"dataset": "breast-cancer"}) == (False, 776, 220, None, 10)
    assert decided({"dataset": "credit", "model": {"gumbel_input": False}}) == (False, 3000, 500, None, 10)
    assert decided({"dataset": "wine", "model": {"gumbel_input": True}}) == (True, 750, 200, None, 10)
    assert decided({"dataset": "credit", "train": {"epochs": 300}}) == (True, 2400, 500, None, 5)
    assert decided({"dataset": "credit", "train": {"steps": 40}}) == (True, 40, 500, None, 5)
    assert decided({"dataset": "credit", "model": {"pack": 4}}) == (True, 3600, 500, None, 4)
    # An uploaded table: 1,250 rows hold 1,000 training rows (a batch of 500), 1,249 hold 999 (a batch of 490).
    waiting = RunConfig.model_validate({"dataset": "tbl_0123abcd"})
    assert (waiting.model.gumbel_input, waiting.train.epochs, waiting.model.pack) == (None, 375, 10)
    assert decided(waiting.model_dump() | {"table": {"rows": 1250}}) == (True, 900, 500, None, 5)
    assert decided(waiting.model_dump() | {"table": {"rows": 1249}}) == (False, 765, 490, None, 10)
    assert RunConfig.model_validate({"dataset": "digits"}).model.gumbel_input is None


@pytest.mark.parametrize(
    ("rows", "reads_noise"), [pytest.param(1249, False, id="small"), pytest.param(1250, True, id="large")]
)
def test_a_gumbel_input_still_null_at_build_is_decided_by_the_training_rows_into_the_checkpoint(
    tmp_path, rows, reads_noise
):
    """An uploaded table's config validated without its rows trains with the decision made from the rows it loads
    (G reading the noise, and D judging packs of 5 where the tables' pack of 10 was left, on a large table); the
    checkpoint's config holds it, and a resumed run (its config null again) makes the same one, exactly."""
    from core.tabular.upload import prepare_table

    csv = tmp_path / "t.csv"
    csv.write_bytes(b"x,c\n" + b"".join(f"{i % 17 / 4},{'ab'[i % 3 // 2]}\n".encode() for i in range(rows)))
    folder = prepare_table(csv, source="csv", datasets_dir=tmp_path / "datasets").tmp_dir
    model = TINY["model"] | {"pack": 10}  # the tables' pack, which a large table's decision turns into 5
    body = TINY | {"dataset": "tbl_0123abcd", "model": model, "schedule": {"sample_every": 2, "checkpoint_every": 2}}

    def fresh() -> RunConfig:
        cfg = RunConfig.model_validate(body)
        assert (cfg.model.gumbel_input, cfg.model.pack) == (None, 10)
        return cfg

    calls: list[int] = []
    train(fresh(), out_dir=tmp_path / "a", dataset_dir=folder)
    train(fresh(), out_dir=tmp_path / "b", dataset_dir=folder, should_stop=lambda: len(calls.append(1) or calls) == K)
    train(fresh(), out_dir=tmp_path / "b", dataset_dir=folder)
    a, b = checkpoint_tensors(tmp_path / "a", N), checkpoint_tensors(tmp_path / "b", N)
    assert a.keys() == b.keys() and tensors_that_differ(a, b) == []
    tg = load_table_generator(tmp_path / "b" / "checkpoints" / f"{N:08d}.safetensors")
    assert tg.cfg.model.gumbel_input is reads_noise and tg.G.gumbel_input is reads_noise
    assert tg.cfg.model.pack == (5 if reads_noise else 10)
    assert a["D.body.0.weight"].shape[1] == tg.cfg.model.pack * (tg.transformer.width + tg.cond.width)
    assert sample_rows(tg, 10, seed=1)[1] == 10


@pytest.mark.parametrize("gumbel_input", [pytest.param(False, id="drawn"), pytest.param(True, id="gumbel-input")])
def test_resuming_a_ctgan_run_gives_the_same_weights_bit_for_bit_and_evaluation_leaves_it_alone(tmp_path, gumbel_input):
    tiny = TINY | {"model": TINY["model"] | {"gumbel_input": gumbel_input}}
    body = tiny | {"schedule": {"sample_every": 2, "checkpoint_every": 100, "eval_every": 3, "eval_samples": 64}}
    cfg = RunConfig.model_validate(body)
    straight, first, _ = assert_resume_matches(tmp_path, cfg, N, K)
    assert [d["step"] for k, d in first if k == "checkpoint"] == [K]
    quiet = RunConfig.model_validate(tiny | {"schedule": {"sample_every": 2, "checkpoint_every": 100}})
    run_events(tmp_path / "c", quiet)

    a, c = checkpoint_tensors(tmp_path / "a", N), checkpoint_tensors(tmp_path / "c", N)
    assert any(k.startswith("G_ema.") for k in a)
    assert tensors_that_differ(a, c) == []  # evaluating did not change the training
    metrics = {d["name"] for k, d in straight if k == "metric" and d["step"] == 3}
    assert {"column_shapes", "column_pair_trends", "quality_score", "dcr_ratio", "ml_efficacy"} <= metrics
    env = next(d for k, d in straight if k == "environment" and "metric_floor" in d)
    assert env["primary_metric"] == ["quality_score", "max"] and env["metric_floor"]["quality_score"] > 0.7
    assert env["metric_floor"]["ml_efficacy"] > 0.9  # wine's cultivar from its measurements, on real rows

    # Sampling from the checkpoint: the same seed, the same rows, in the table's own columns and categories.
    path = tmp_path / "a" / "checkpoints" / f"{N:08d}.safetensors"
    tg = load_table_generator(path)
    rows, made = sample_rows(tg, 50, seed=3)
    again, _ = sample_rows(tg, 50, seed=3)
    other, _ = sample_rows(tg, 50, seed=4)
    data = builtin_dataset("wine")
    csv = write_csv(rows, tg.transformer.columns)
    assert made == 50 and csv == write_csv(again, tg.transformer.columns) != write_csv(other, tg.transformer.columns)
    back = read_csv(csv)
    assert list(back) == list(data.rows) and set(back["target"]) <= {"class_0", "class_1", "class_2"}
    assert all(float(v) == int(v) for v in back["magnesium"])  # a discrete column comes back as integers

    # Conditions: a category through the conditional vector, every row checked; what cannot be met is refused.
    fixed, made = sample_rows(tg, 20, seed=5, conditions={"target": "class_1"})
    assert made == len(fixed["target"]) and set(fixed["target"]) <= {"class_1"}
    with pytest.raises(ValueError, match=r"conditions\.target: 'class_9' is not one of its categories"):
        sample_rows(tg, 5, seed=0, conditions={"target": "class_9"})
    with pytest.raises(ValueError, match=r"conditions\.alcohol: a continuous column cannot be fixed"):
        sample_rows(tg, 5, seed=0, conditions={"alcohol": 13.0})

    # The image generations path says it cannot serve a table run.
    with pytest.raises(ValueError, match="this run trains ctgan, which synthesizes table rows"):
        checkpoint.load_generator(path)


def test_the_metrics_follow_their_definitions():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert ks_complement(x, x) == 1.0 and ks_complement(x, x + 10) == 0.0
    assert ks_complement(x, np.array([1.0, 2.0, np.nan, np.nan])) == 0.5
    cats = np.array(["a", "a", "b", None], dtype=object)
    assert tv_complement(cats, cats) == 1.0
    assert tv_complement(cats, np.array(["a", "b", "b", "b"], dtype=object)) == pytest.approx(0.5)

    rng = np.random.default_rng(0)
    u = rng.normal(size=400)
    columns = [Column("u", "continuous", decimals=3), Column("v", "continuous", decimals=3), Column("c", "categorical")]
    real = {"u": u, "v": u + 0.1 * rng.normal(size=400), "c": np.where(u > 0, "hi", "lo").astype(object)}
    shuffled = {"u": real["u"], "v": rng.permutation(real["v"]), "c": rng.permutation(real["c"])}
    same, broken = quality(real, real, columns), quality(real, shuffled, columns)
    assert same == {"column_shapes": 1.0, "column_pair_trends": 1.0, "quality_score": 1.0}
    assert broken["column_shapes"] == 1.0 and broken["column_pair_trends"] < 0.8
    train_rows = {k: v[:200] for k, v in real.items()}
    held = {k: v[200:] for k, v in real.items()}
    assert dcr_ratio(train_rows, train_rows, held, columns) == 0.0  # copies of training rows
    assert 0.5 < dcr_ratio(held, train_rows, held, columns) <= 1.0
    # Efficacy: c is the sign of u, so a classifier fitted on real rows ranks the holdout well, and one fitted on rows
    # whose classes were swapped ranks it backwards.
    assert ml_efficacy(train_rows, held, columns, "c", train_rows) > 0.95
    swapped = train_rows | {"c": np.where(train_rows["c"] == "hi", "lo", "hi").astype(object)}
    assert ml_efficacy(swapped, held, columns, "c", train_rows) < 0.05


@pytest.mark.parametrize(
    "csv",
    [
        pytest.param(
            b"a,b\n" + b"".join(f"{i % 7}.5,{(i * 37) % 11}\n".encode() for i in range(60)), id="numbers-only"
        ),
        pytest.param(
            b"x,colour,flag,day\n"
            + b"".join(
                f"{'' if i % 9 == 0 else i / 10},{['red', 'blue', ''][i % 3]},{'yes' if i % 4 else 'no'},"
                f"2024-02-{1 + i % 28:02d}\n".encode()
                for i in range(60)
            ),
            id="mixed-with-missing",
        ),
    ],
)
def test_a_ctgan_step_trains_on_any_table_and_its_rows_decode(csv: bytes):
    """Tables without a categorical column take their real rows from the loop's data order; missing values,
    booleans and dates go through the conditional vector and the transformer like any other state."""
    from core.datasets import DataOrder
    from core.families import Batch, Step, ctgan

    data = table_dataset("t", read_csv(csv))
    cfg = RunConfig.model_validate(TINY)
    torch.manual_seed(0)
    m = ctgan.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, d: None)
    order = DataOrder(len(data), seed=0)

    def next_batch() -> Batch:
        indices = order.next(cfg.train.batch_size)
        return Batch(indices, *data.batch(indices))

    for step in (1, 2):
        at = Step(step, 0.0, True, torch.device("cpu"), next_batch=next_batch, autocast=contextlib.nullcontext)
        losses, stats = ctgan.train_step(m, cfg, at)
        assert all(torch.isfinite(v) for v in losses.values()) and "loss_cond" in stats
    rows, _ = ctgan.sampler(m.G, cfg, m, device=torch.device("cpu"), autocast=contextlib.nullcontext)(30)
    fake = data.transformer.decode(rows.numpy())
    assert list(fake) == list(data.rows) and all(len(v) == 30 for v in fake.values())
    assert m.cond.width == (5 if b"colour" in csv else 0)  # colour: red, blue and missing; flag: yes and no


def test_target_share_puts_that_share_of_training_conditions_and_every_sampled_row_on_the_target():
    from core.families import ctgan

    csv = b"colour,size,y\n" + b"".join(
        f"{['red', 'blue', 'green'][i % 3]},{['s', 'm'][i % 2]},{'yes' if i % 5 == 0 else 'no'}\n".encode()
        for i in range(100)
    )
    data = table_dataset("t", read_csv(csv), target="y")
    cfg = RunConfig.model_validate(TINY | {"model": TINY["model"] | {"target_share": 0.5}})
    torch.manual_seed(0)
    m = ctgan.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, d: None)
    target = m.cond.target
    assert target is not None and data.columns[m.cond.spans[target].column].name == "y"
    _, col, _ = m.cond.draw(20_000, log_freq=True)
    assert (col == target).float().mean().item() == pytest.approx(0.5 + 0.5 / 3, abs=0.02)
    _, col, cat = m.cond.draw(20_000, log_freq=False)
    assert bool((col == target).all())  # sampled rows follow the target's frequency in the training rows
    yes = data.transformer.codes[m.cond.spans[target].column]["categories"].index("yes")
    assert (cat == yes).float().mean().item() == pytest.approx(np.mean(data.rows["y"] == "yes"), abs=0.01)
    plain = RunConfig.model_validate(TINY)
    m = ctgan.build(plain, data, device=torch.device("cpu"), latest=None, emit=lambda kind, d: None)
    assert m.cond.target is None  # null: the target is one categorical column among the others


def test_gumbel_input_feeds_the_generator_the_noise_that_picks_each_category_and_mode():
    """With model.gumbel_input, G reads the Gumbel noise of every one-hot and activate draws with that same noise:
    a hard row's category or mode is the Gumbel-max of G's logits and that noise."""
    from core.families import ctgan

    data = builtin_dataset("wine")
    cfg = RunConfig.model_validate(TINY | {"model": TINY["model"] | {"gumbel_input": True}})
    torch.manual_seed(0)
    m = ctgan.build(cfg, data, device=torch.device("cpu"), latest=None, emit=lambda kind, d: None)
    G = m.G.eval()
    z, cond = torch.randn(16, cfg.model.z_dim), m.cond.draw(16, log_freq=False)[0]
    noise = ctgan.gumbel_noise(16, data.transformer.width, "cpu")  # (16, D)
    raw = G(z, cond, noise)
    assert not torch.allclose(raw, G(z, cond, ctgan.gumbel_noise(16, data.transformer.width, "cpu")))
    rows = ctgan.activate(raw, m.spans, hard=True, noise=noise)
    one_hots = [s for s in m.spans if s.activation == "softmax"]
    assert one_hots
    for s in one_hots:
        part, picked = rows[:, s.start : s.start + s.width], (raw + noise)[:, s.start : s.start + s.width].argmax(1)
        assert torch.equal(part.sum(1), torch.ones(16)) and torch.equal(part.argmax(1), picked)
    with pytest.raises(ValidationError, match=r"model\.gumbel_input: only ctgan draws categories by Gumbel noise"):
        RunConfig.model_validate({"dataset": "digits", "model": {"gumbel_input": True}})
