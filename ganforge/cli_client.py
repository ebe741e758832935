"""The client half of the `ganforge` command line: runs, samples, generate, translate, project, datasets, tokens,
me.

Every command talks to a server over HTTP with `ganforge.client.Ganforge`. The server's URL and token come
from `--url`/`--token` or `GANFORGE_URL`/`GANFORGE_TOKEN`. People get tables, scripts get `--json`; any
failure exits non-zero and prints the server's detail. `ganforge/cli.py` adds these with `register(app)`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, cast

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ganforge.client import (
    DEFAULT_URL,
    APIError,
    Ganforge,
    GanforgeError,
    ImageFormat,
    Run,
    TableFormat,
    TransportError,
)

console = Console()
err_console = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="GANFORGE_URL", help="Server URL.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="GANFORGE_TOKEN", help="API token.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]

runs_app = typer.Typer(help="Training runs.", no_args_is_help=True)
samples_app = typer.Typer(help="Sample grids written during training.", no_args_is_help=True)
datasets_app = typer.Typer(help="Uploaded and built-in datasets.", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens: admins create them; everyone lists and revokes their own, admins any.", no_args_is_help=True
)
checkpoints_app = typer.Typer(help="Checkpoints of a run.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `ganforge` app."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(samples_app, name="samples")
    app.add_typer(checkpoints_app, name="checkpoints")
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(tokens_app, name="tokens")
    app.command("generate")(generate)
    app.command("translate")(translate)
    app.command("project")(project)
    app.command("me")(me)


@contextmanager
def _connect(url: str, token: str | None) -> Iterator[Ganforge]:
    """A client whose errors end the command with exit code 1 and the server's detail on stderr."""
    try:
        with Ganforge(url, token or "") as client:
            yield client
    except GanforgeError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _output(json_out: bool, data: Any, human: RenderableType) -> None:
    """`data` as JSON for scripts, or `human` (a line of markup, a table) for people."""
    if json_out:
        _print_json(data)
    else:
        console.print(human)


def _read_config(path: Path) -> dict[str, Any]:
    """A run config from a .json or .yaml/.yml file."""
    try:
        text = path.read_text()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            _fail("reading YAML needs pyyaml (pip install pyyaml); or write the config as .json")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            _fail(f"{path} is not valid YAML: {exc}")
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            _fail(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        _fail(f"{path} must hold a mapping of config fields, such as {{dataset: ring8}}")
    return cast(dict[str, Any], data)


def _set_field(config: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` to a nested config; the value is JSON when it parses, else a string."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        _fail(f"--set {item}: use KEY=VALUE, e.g. train.steps=500")
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    *parents, last = key.split(".")
    node = config
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            _fail(f"--set {item}: {part} is not a section")
        node = child
    node[last] = value


def _progress_text(step: int, total: int) -> str:
    return f"{step}/{total} ({100 * step // total} %)" if total else f"{step}/?"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _losses(values: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.3f}" for name, value in sorted(values.items())) or "-"


def _run_table(runs: list[Run]) -> Table:
    table = Table()
    table.add_column("ID", no_wrap=True)  # whole, so that it can be copied
    table.add_column("NAME / DATASET", overflow="fold")
    for column in ("STATUS", "STEP", "CREATED"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        dataset = str(run.config.get("dataset", "-"))
        table.add_row(
            run.id,
            f"{run.name} ({dataset})" if run.name else dataset,
            run.status,
            f"{run.progress.step}/{run.progress.total_steps}",
            run.created_at.astimezone().strftime("%m-%d %H:%M") if run.created_at else "-",
        )
    return table


def _run_details(run: Run) -> Table:
    table = Table(show_header=False, box=None)
    table.add_row("id", run.id)
    table.add_row("name", run.name or "-")
    table.add_row("status", run.status)
    table.add_row("dataset", str(run.config.get("dataset", "-")))
    table.add_row("progress", _progress_text(run.progress.step, run.progress.total_steps))
    if run.progress.images_per_sec is not None:
        table.add_row("images/sec", f"{run.progress.images_per_sec:.0f}")
    if not run.done:
        table.add_row("eta", _eta(run.progress.eta_seconds))
    for name, value in sorted(run.latest_metrics.items()):
        table.add_row(name, f"{value:.4g}")
    table.add_row("created", str(run.created_at or "-"))
    table.add_row("started", str(run.started_at or "-"))
    table.add_row("finished", str(run.finished_at or "-"))
    table.add_row("worker", run.worker or "-")
    if run.error:
        table.add_row("error", f"[red]{escape(run.error)}[/red]")
    return table


def _watch(client: Ganforge, run_id: str) -> Run:
    """A live progress bar fed by the run's event stream, or by polling when the stream is not there."""
    run = client.runs.get(run_id)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[ips]} img/s  ETA {task.fields[eta]}  {task.fields[losses]}"),
        console=err_console,
        transient=False,
    )
    task = bar.add_task(
        run.status,
        total=run.progress.total_steps or None,
        completed=run.progress.step,
        ips="-",
        eta=_eta(run.progress.eta_seconds),
        losses=_losses(run.latest_metrics),
    )

    def show_run(current: Run) -> None:
        ips = current.progress.images_per_sec
        bar.update(
            task,
            description=current.status,
            total=current.progress.total_steps or None,
            completed=current.progress.step,
            ips=f"{ips:.0f}" if ips is not None else "-",
            eta=_eta(current.progress.eta_seconds),
            losses=_losses(current.latest_metrics),
        )

    with bar:
        if run.done:
            show_run(run)
            return run
        streamed = True
        try:
            for event in client.runs.events(run_id):
                data = event.data if isinstance(event.data, dict) else {}
                if event.event == "progress":
                    ips = data.get("images_per_sec")
                    bar.update(
                        task,
                        description="running",
                        total=data.get("total_steps") or None,
                        completed=data.get("step", 0),
                        ips=f"{ips:.0f}" if isinstance(ips, int | float) else "-",
                        eta=_eta(data.get("eta_seconds")),
                        losses=_losses(data.get("losses") or {}),
                    )
                elif event.event == "status":
                    bar.update(task, description=str(data.get("status", "")))
        except (APIError, TransportError) as exc:
            if isinstance(exc, APIError) and exc.status == 401:
                raise
            streamed = False
        if not streamed:
            err_console.print("[dim]event stream not available; polling[/dim]")
            return client.runs.wait(run_id, on_progress=show_run, poll_interval=1.0)
        run = client.runs.get(run_id)
        show_run(run)
        return run


def _print_status(run: Run, json_out: bool) -> None:
    """One line for people (id and status), the whole run for scripts."""
    _output(json_out, run.raw, f"run [bold]{run.id}[/bold] {run.status}")


def _finish(run: Run, json_out: bool) -> None:
    _output(json_out, run.raw, _run_details(run))
    if run.status != "succeeded":
        _fail(f"run {run.id} {run.status}" + (f": {run.error}" if run.error else ""))


@runs_app.command("create")
def runs_create(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="Run config, .json or .yaml.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE over the file, e.g. --set train.steps=500 (VALUE is JSON if it parses)."),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the run until it ends.")] = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Retrying with the same key returns the same run.")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start a training run from a config file and/or --set fields."""
    config = _read_config(file) if file is not None else {}
    for item in overrides or []:
        _set_field(config, item)
    with _connect(url, token) as client:
        run = client.runs.create(config, idempotency_key=idempotency_key)
        if watch:
            err_console.print(f"run [bold]{run.id}[/bold] queued")
            _finish(_watch(client, run.id), json_out)
            return
    _print_status(run, json_out)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Your runs, newest first."""
    with _connect(url, token) as client:
        page = client.runs.list(status=status, limit=limit, cursor=cursor)
    if json_out:
        _print_json({"items": [run.raw for run in page.items], "next_cursor": page.next_cursor})
        return
    console.print(_run_table(page.items))
    if page.next_cursor:
        console.print(f"[dim]more: --cursor {page.next_cursor}[/dim]")


@runs_app.command("show")
def runs_show(run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """One run: status, progress, metrics, error."""
    with _connect(url, token) as client:
        run = client.runs.get(run_id)
    _output(json_out, run.raw, _run_details(run))


@runs_app.command("watch")
def runs_watch(run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Follow a run live (step, images/sec, ETA, losses); exit 1 unless it succeeds."""
    with _connect(url, token) as client:
        run = _watch(client, run_id)
        _finish(run, json_out)


@runs_app.command("cancel")
def runs_cancel(run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Stop a run at its next step; its last checkpoint stays."""
    with _connect(url, token) as client:
        run = client.runs.cancel(run_id)
    _print_status(run, json_out)


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    steps: Annotated[int | None, typer.Option(help="Steps to train past the last checkpoint.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the run until it ends.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Continue a run from its last checkpoint."""
    with _connect(url, token) as client:
        run = client.runs.resume(run_id, steps=steps)
        if watch:
            _finish(_watch(client, run.id), json_out)
            return
    _print_status(run, json_out)


@runs_app.command("delete")
def runs_delete(run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Delete a run and its artifacts."""
    with _connect(url, token) as client:
        client.runs.delete(run_id)
    _output(json_out, {"id": run_id, "deleted": True}, f"run [bold]{run_id}[/bold] deleted")


@runs_app.command("metrics")
def runs_metrics(
    run_id: str,
    names: Annotated[str | None, typer.Option(help="Comma-separated series names (default: all).")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print step,name,value rows.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A run's metric series: the newest value of each, or everything with --json/--csv."""
    with _connect(url, token) as client:
        if csv:
            sys.stdout.write(client.runs.metrics_csv(run_id))
            return
        series = client.runs.metrics(run_id, names=names.split(",") if names else None)
    table = Table("NAME", "STEP", "VALUE", "POINTS")
    for name, points in sorted(series.items()):
        if points:
            step, value = points[-1]
            table.add_row(name, str(step), f"{value:.5g}", str(len(points)))
    _output(json_out, {"series": series}, table)


@checkpoints_app.command("list")
def checkpoints_list(run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """A run's checkpoints."""
    with _connect(url, token) as client:
        items = client.runs.checkpoints(run_id)
    table = Table("STEP", "SIZE (bytes)", "URL")
    for c in items:
        table.add_row(str(c.step), str(c.size_bytes), c.url)
    _output(json_out, [{"step": c.step, "url": c.url, "size_bytes": c.size_bytes} for c in items], table)


@checkpoints_app.command("get")
def checkpoints_get(
    run_id: str,
    step: Annotated[int | None, typer.Option(help="The checkpoint of this step (default: the newest).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Default: RUN_ID-STEP.safetensors.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a checkpoint (safetensors weights, with the run's config in its metadata)."""
    with _connect(url, token) as client:
        if step is None:
            items = client.runs.checkpoints(run_id)
            if not items:
                _fail(f"run {run_id} has no checkpoint yet")
            step = items[-1].step
        target = output or Path(f"{run_id}-{step}.safetensors")
        client.runs.download_checkpoint(run_id, step, target)
    size = target.stat().st_size
    _output(
        json_out, {"path": str(target), "step": step, "size_bytes": size}, f"wrote {target} ({size} bytes, step {step})"
    )


@samples_app.command("get")
def samples_get(
    run_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the PNG.")] = Path("grid.png"),
    step: Annotated[int | None, typer.Option(help="The grid of this step (default: the newest).")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a sample grid written during training."""
    with _connect(url, token) as client:
        png = client.runs.latest_samples(run_id) if step is None else client.runs.sample(run_id, step)
    output.write_bytes(png)
    _output(json_out, {"path": str(output), "size_bytes": len(png)}, f"wrote {output} ({len(png)} bytes)")


def generate(
    run_id: str,
    n: Annotated[int, typer.Option("-n", help="Number of samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the latent batch.")] = 0,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="out.png (one grid), out.zip (one PNG each) or out.npz (arrays); out.csv or out.parquet (table rows).",
        ),
    ] = Path("out.png"),
    step: Annotated[str, typer.Option(help="Checkpoint step, or 'latest'.")] = "latest",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the run has one.")] = True,
    truncation: Annotated[float | None, typer.Option(help="Truncation of the latents.")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated class labels (conditional runs).")] = None,
    interpolate: Annotated[int | None, typer.Option(help="Interpolate between latents in this many steps.")] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="Tables: column=value that every row must have; repeat for more.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sample from a run's checkpoint; the output's suffix picks the format."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("png", "zip", "npz", "csv", "parquet"):
        _fail(f"-o {output}: the suffix must be .png, .zip, .npz, .csv or .parquet")
    if any("=" not in c for c in condition or []):
        _fail("--condition: column=value")
    conditions = dict(c.split("=", 1) for c in condition) if condition else None
    if step != "latest" and not step.isdigit():
        _fail(f"--step {step}: a step number or 'latest'")
    try:
        label_list = [int(x) for x in labels.split(",")] if labels else None
    except ValueError:
        _fail(f"--labels {labels}: comma-separated integers")
    with _connect(url, token) as client:
        handle = client.generations.create(
            run_id,
            n=n,
            seed=seed,
            step="latest" if step == "latest" else int(step),
            ema=ema,
            truncation=truncation,
            labels=label_list,
            format=cast(ImageFormat | TableFormat, fmt),
            interpolate=interpolate,
            conditions=conditions,
        )
        with err_console.status(f"generation {handle.id}: waiting for a worker"):
            data = handle.result(timeout=timeout)
    output.write_bytes(data)
    _output(
        json_out,
        {"generation": handle.generation.raw, "path": str(output), "size_bytes": len(data)},
        f"wrote {output} ({len(data)} bytes) from generation {handle.id}",
    )


def translate(
    run_id: str,
    input: Annotated[
        Path,
        typer.Argument(help="A ZIP of images (or an .npz of float images in [-1, 1]).", exists=True, dir_okay=False),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the result: a ZIP of PNGs (an .npz for an .npz).")
    ] = Path("out.zip"),
    direction: Annotated[str, typer.Option(help="AtoB, or BtoA (cyclegan runs).")] = "AtoB",
    step: Annotated[str, typer.Option(help="Checkpoint step, or 'latest'.")] = "latest",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the run has one.")] = True,
    seed: Annotated[
        int, typer.Option(help="Seed of the latent codes of a cyclegan run that has them (model.latent_dim), BtoA.")
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Translate your images with a pix2pix, cyclegan or srgan run: the outputs are named as the inputs."""
    if direction not in ("AtoB", "BtoA"):
        _fail(f"--direction {direction}: AtoB or BtoA")
    if step != "latest" and not step.isdigit():
        _fail(f"--step {step}: a step number or 'latest'")
    with _connect(url, token) as client:
        handle = client.translations.create(
            run_id,
            input,
            direction=cast(Literal["AtoB", "BtoA"], direction),
            step="latest" if step == "latest" else int(step),
            ema=ema,
            seed=seed,
        )
        with err_console.status(f"translation {handle.id}: waiting for a worker"):
            data = handle.result(timeout=timeout)
    output.write_bytes(data)
    _output(
        json_out,
        {"translation": handle.translation.raw, "path": str(output), "size_bytes": len(data)},
        f"wrote {output} ({len(data)} bytes) from translation {handle.id}",
    )


def project(
    run_id: str,
    input: Annotated[
        Path, typer.Argument(help="A ZIP of images at the run's size or larger.", exists=True, dir_okay=False)
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Where to write the ZIP of reconstructions and latents."),
    ] = Path("projection.zip"),
    steps: Annotated[int, typer.Option(help="Optimisation steps per image.")] = 300,
    space: Annotated[str, typer.Option(help="w (one w for every layer) or w+ (one per layer).")] = "w",
    seed: Annotated[int, typer.Option(help="Seed of the starting noise maps and of w's perturbation.")] = 0,
    step: Annotated[str, typer.Option(help="Checkpoint step, or 'latest'.")] = "latest",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the run has one.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 1800.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Project your images into a stylegan2 run's W space: each image's latent and its reconstruction."""
    if space not in ("w", "w+"):
        _fail(f"--space {space}: w or w+")
    if step != "latest" and not step.isdigit():
        _fail(f"--step {step}: a step number or 'latest'")
    with _connect(url, token) as client:
        handle = client.projections.create(
            run_id,
            input,
            steps=steps,
            space=cast(Literal["w", "w+"], space),
            seed=seed,
            step="latest" if step == "latest" else int(step),
            ema=ema,
        )
        with err_console.status(f"projection {handle.id}: waiting for a worker"):
            data = handle.result(timeout=timeout)
    output.write_bytes(data)
    _output(
        json_out,
        {"projection": handle.projection.raw, "path": str(output), "size_bytes": len(data)},
        f"wrote {output} ({len(data)} bytes) from projection {handle.id}",
    )


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[
        Path,
        typer.Argument(help="A ZIP of images, one folder per class (folders optional), or a CSV or Parquet table."),
    ],
    name: Annotated[str | None, typer.Option(help="A name (default: the file's stem).")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Upload a dataset."""
    if not file.is_file():
        _fail(f"{file}: no such file")
    with _connect(url, token) as client:
        dataset = client.datasets.upload(file, name=name)
    about = f"{dataset.num_images} images, {dataset.image_size}px, {dataset.channels} channel(s)"
    _output(json_out, dataset.raw, f"dataset [bold]{dataset.id}[/bold]: {about}")


@datasets_app.command("list")
def datasets_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Built-in and uploaded datasets."""
    with _connect(url, token) as client:
        datasets = client.datasets.list()
    table = Table()
    table.add_column("ID", no_wrap=True)  # whole, so that it can be copied
    table.add_column("NAME", overflow="fold")
    for column in ("IMAGES", "PX", "CH", "CLASSES", "BUILT-IN"):
        table.add_column(column, no_wrap=True)
    for d in datasets:
        classes = len(d.classes) if isinstance(d.classes, list) else d.classes
        table.add_row(
            d.id,
            d.name,
            str(d.num_images if d.num_images is not None else "-"),
            str(d.image_size or "-"),
            str(d.channels if d.channels is not None else "-"),
            str(classes if classes is not None else "-"),
            "yes" if d.builtin else "",
        )
    _output(json_out, [d.raw for d in datasets], table)


@datasets_app.command("delete")
def datasets_delete(
    dataset_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False
) -> None:
    """Delete an uploaded dataset (refused while a queued or running run uses it)."""
    with _connect(url, token) as client:
        client.datasets.delete(dataset_id)
    _output(json_out, {"id": dataset_id, "deleted": True}, f"dataset [bold]{dataset_id}[/bold] deleted")


@tokens_app.command("create")
def tokens_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the new token admin rights.")] = False,
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", help="The token stops working after this many days.")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a user token (admins only); it is shown once."""
    with _connect(url, token) as client:
        created = client.tokens.create(name, admin=admin, expires_in_days=expires_in_days)
    if json_out:
        _print_json(created.raw)
    else:
        console.print(f"token for [bold]{escape(created.name)}[/bold] (shown once):")
        console.print(created.token, highlight=False, soft_wrap=True)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


@tokens_app.command("list")
def tokens_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Tokens (all of them for an admin, your own for a user); never their secrets."""
    with _connect(url, token) as client:
        tokens = client.tokens.list()
    table = Table("ID", "NAME", "ADMIN", "CREATED", "EXPIRES", "LAST USED", "REVOKED")
    for t in tokens:
        admin = ("bootstrap" if t.bootstrap else "yes") if t.is_admin else ""
        table.add_row(
            str(t.id),
            escape(t.name),
            admin,
            _when(t.created_at),
            _when(t.expires_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
    _output(json_out, [t.raw for t in tokens], table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Revoke a token at once (yours, or any for an admin); what it owns stays."""
    with _connect(url, token) as client:
        client.tokens.revoke(token_id)
    _output(json_out, {"id": token_id, "revoked": True}, f"token [bold]{token_id}[/bold] revoked")


@tokens_app.command("quotas")
def tokens_quotas(
    token_id: int,
    quotas: Annotated[
        list[str], typer.Argument(help="NAME=N to set a quota for this token, NAME= to put the server's back.")
    ],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a user token's own quotas (admins only), e.g. `queued_runs=50 datasets=`: running_runs, queued_runs,
    datasets, dataset_bytes, artifact_bytes, jobs_in_flight."""
    changes: dict[str, int | None] = {}
    for item in quotas:
        name, sep, value = item.partition("=")
        if not sep or (value and not value.isdigit()):
            raise typer.BadParameter(f"{item!r}: write NAME=N, or NAME= to put the server's number back")
        changes[name] = int(value) if value else None
    with _connect(url, token) as client:
        updated = client.tokens.set_quotas(token_id, **changes)
    own = ", ".join(f"{k} {v}" for k, v in updated.quotas.items()) or "the server's, every one"
    _output(json_out, updated.raw, f"token [bold]{token_id}[/bold] quotas: {own}")


def me(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Who your token is, and your usage: runs by status, datasets, jobs in flight."""
    with _connect(url, token) as client:
        who = client.me()
    usage = who.usage
    runs = ", ".join(f"{status} {count}" for status, count in usage.runs.items())
    jobs = ", ".join(f"{kind} {count}" for kind, count in usage.jobs_in_flight.items())
    lines = [
        f"[bold]{escape(who.name)}[/bold] (token {who.id}{', admin' if who.is_admin else ''}), "
        f"expires: {_when(who.expires_at) if who.expires_at else 'never'}",
        f"runs: {runs}",
        f"datasets: {usage.datasets} ({usage.dataset_bytes} bytes)",
        f"jobs in flight: {jobs}",
    ]
    for name, quota in (who.quotas or {}).items():
        lines.append(f"quota {name}: {quota['used']} of {quota['limit']}")
    _output(json_out, who.raw, "\n".join(lines))
