"""Quotas per user: what one token may hold at once, so that no user fills the queue, the workers or the disk.

Each quota's number is the server's (GANFORGE_QUOTA_*, store/settings.py) unless an admin set another for the
token (`User.quotas`, PATCH /tokens/{id}). Admin tokens have no quotas: they run the server. What counts:

- `running_runs`: runs training at once. Checked where a run starts: a worker that takes a run whose owner already
  has this many running gives it back to the queue (`defer_over_running_quota`), and the reconciler sends it again.
- `queued_runs`: runs waiting in the queue; POST /runs refuses a new one at the quota (and resuming a run).
- `datasets`, `dataset_bytes`: uploaded datasets and the bytes of their stored files (the normalised images or the
  table, its index and preview), as the artifact storage lists them: one listing per dataset.
- `artifact_bytes`: the checkpoints a user's runs keep: for each run, the checkpoints its events announced, at most
  its `schedule.keep_checkpoints` (and the best one, which pruning spares), at the largest size they reported.
  Sample grids (small PNGs, at most GANFORGE_MAX_SAMPLE_GRIDS a run) and job results are not counted.
- `jobs_in_flight`: jobs (generations, scores, translations, projections) queued or running.

Over `running_runs`, `queued_runs` or `jobs_in_flight`, waiting helps (the API answers 429 with Retry-After); over
the others it does not (403: delete something first). A check made right before the row it counts is inserted
locks the owner's row first (`lock_owner`) until the caller commits, so two requests at once count each other's
rows and only one takes the last free place; a check made earlier, to refuse an upload before it streams in,
takes no lock (`lock=False`) and is made again, locked, before the insert (datasets are stored one at a time under
the API's storage lock instead). A worker counts running runs under the same lock. Keyword-only functions taking
a session; none commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.artifacts import Storage
from store.layout import dataset_prefix
from store.models import ACTIVE_STATUSES, Dataset, Event, Generation, Run, User, utcnow
from store.settings import Settings

QuotaName = Literal["running_runs", "queued_runs", "datasets", "dataset_bytes", "artifact_bytes", "jobs_in_flight"]
QUOTAS: tuple[QuotaName, ...] = (
    "running_runs",
    "queued_runs",
    "datasets",
    "dataset_bytes",
    "artifact_bytes",
    "jobs_in_flight",
)
# The quotas that free up by themselves (a run or job ends): a client should wait and try again.
WAITING_HELPS: frozenset[str] = frozenset({"running_runs", "queued_runs", "jobs_in_flight"})


@dataclass(frozen=True)
class Refusal:
    """A quota that a request would go over: its name, number and use, and what is counted and what to do
    (read after "<quota> quota: <used> of <limit> used;")."""

    quota: QuotaName
    limit: int
    used: int
    message: str

    @property
    def waiting_helps(self) -> bool:
        return self.quota in WAITING_HELPS


def quota_limits(user: User, settings: Settings) -> dict[QuotaName, int] | None:
    """The user's quotas: the server's, with the token's own numbers over them; None for an admin (none)."""
    if user.is_admin:
        return None
    own = user.quotas or {}
    return {name: int(own.get(name, getattr(settings, f"quota_{name}"))) for name in QUOTAS}


def run_counts(*, session: Session, user_id: int) -> dict[str, int]:
    """The user's queued and running runs."""
    counts = dict.fromkeys(ACTIVE_STATUSES, 0)
    for status, count in session.execute(
        select(Run.status, func.count())
        .where(Run.owner_id == user_id, Run.status.in_(ACTIVE_STATUSES))
        .group_by(Run.status)
    ).tuples():
        counts[status] = count
    return counts


def jobs_in_flight(*, session: Session, user_id: int) -> int:
    """The user's jobs (generations, scores, translations, projections) that are queued or running."""
    query = select(func.count()).where(Generation.owner_id == user_id, Generation.status.in_(ACTIVE_STATUSES))
    return int(session.execute(query).scalar_one())


def dataset_hashes(*, session: Session, user_id: int) -> list[str]:
    return list(session.execute(select(Dataset.content_hash).where(Dataset.owner_id == user_id)).scalars())


def dataset_bytes(storage: Storage, hashes: Iterable[str]) -> int:
    """The bytes of these datasets' stored files, one storage listing each."""
    return sum(entry.size for h in hashes for entry in storage.list(dataset_prefix(h)))


def artifact_bytes(*, session: Session, user_id: int) -> int:
    """The bytes of the checkpoints the user's runs keep, from their checkpoint events (see the module text)."""
    written = session.execute(
        select(Event.run_id, func.count(), func.max(Event.data["size_bytes"].as_integer()))
        .join(Run, Run.id == Event.run_id)
        .where(Run.owner_id == user_id, Event.kind == "checkpoint")
        .group_by(Event.run_id)
    ).tuples()
    sizes = {run_id: (count, int(size or 0)) for run_id, count, size in written}
    if not sizes:
        return 0
    total = 0
    for run_id, config, environment in session.execute(
        select(Run.id, Run.config, Run.environment).where(Run.id.in_(list(sizes)))
    ).tuples():
        count, size = sizes[run_id]
        keep = int(config["schedule"]["keep_checkpoints"]) + (1 if (environment or {}).get("best_step") else 0)
        total += min(count, keep) * size
    return total


def lock_owner(*, session: Session, user_id: int) -> None:
    """Hold the user's row until the caller commits or rolls back: a write that changes nothing, which takes the
    row's lock on PostgreSQL and the database's one write lock on SQLite. Made before counting, so that the counts
    see any rows a concurrent request of the same user committed while this one waited."""
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(is_admin=User.is_admin)
        .execution_options(synchronize_session=False)
    )


def check_new_run(*, session: Session, user: User, settings: Settings) -> Refusal | None:
    """Whether the user may queue one more run: `queued_runs`, then `artifact_bytes`. Locks the user's row
    (`lock_owner`): call it right before the run's insert."""
    limits = quota_limits(user, settings)
    if limits is None:
        return None
    lock_owner(session=session, user_id=user.id)
    queued = run_counts(session=session, user_id=user.id)["queued"]
    if queued >= limits["queued_runs"]:
        return Refusal(
            "queued_runs",
            limits["queued_runs"],
            queued,
            "your runs waiting in the queue fill it; try again once one has started, or cancel one",
        )
    stored = artifact_bytes(session=session, user_id=user.id)
    if stored >= limits["artifact_bytes"]:
        return Refusal(
            "artifact_bytes",
            limits["artifact_bytes"],
            stored,
            "bytes of checkpoints your runs keep; delete runs you no longer need",
        )
    return None


def check_new_job(*, session: Session, user: User, settings: Settings, lock: bool = True) -> Refusal | None:
    """Whether the user may queue one more job (`jobs_in_flight`). With `lock`, the user's row is locked first
    (`lock_owner`): call it so right before the job's insert."""
    limits = quota_limits(user, settings)
    if limits is None:
        return None
    if lock:
        lock_owner(session=session, user_id=user.id)
    used = jobs_in_flight(session=session, user_id=user.id)
    if used >= limits["jobs_in_flight"]:
        return Refusal(
            "jobs_in_flight",
            limits["jobs_in_flight"],
            used,
            "jobs (generations, scores, translations, projections) queued or running; try again once one has ended",
        )
    return None


def check_new_dataset(
    *, session: Session, storage: Storage, user: User, settings: Settings, adding_bytes: int = 0, lock: bool = True
) -> Refusal | None:
    """Whether the user may store one more dataset of `adding_bytes` (0 before its size is known): `datasets`,
    then `dataset_bytes`. With `lock`, the user's row is locked first (`lock_owner`)."""
    limits = quota_limits(user, settings)
    if limits is None:
        return None
    if lock:
        lock_owner(session=session, user_id=user.id)
    hashes = dataset_hashes(session=session, user_id=user.id)
    if len(hashes) >= limits["datasets"]:
        return Refusal(
            "datasets",
            limits["datasets"],
            len(hashes),
            "uploaded datasets; delete one to upload another",
        )
    stored = dataset_bytes(storage, hashes)
    if stored + adding_bytes > limits["dataset_bytes"] or stored >= limits["dataset_bytes"]:
        adding = f", and this one takes {adding_bytes} more" if adding_bytes else ""
        return Refusal(
            "dataset_bytes",
            limits["dataset_bytes"],
            stored,
            f"bytes of stored datasets{adding}; delete datasets you no longer need",
        )
    return None


def defer_over_running_quota(*, session: Session, run: Run, settings: Settings) -> bool:
    """Called by a worker that has just taken `run`: when its owner already has `running_runs` other runs
    training, give the run back to the queue as it was (the attempt does not count) and return True; the
    reconciler sends it again while it waits. False: train it; a run the lease started just now starts from here, so
    that its `started_at` is never before the `finished_at` of the run whose end let it in."""
    # The owner's row, locked until the caller commits: two workers taking two of one user's runs at once count
    # each other's (on SQLite the lease's UPDATE already holds the database's one write lock).
    owner = session.get(User, run.owner_id, with_for_update=True)
    limits = quota_limits(owner, settings) if owner is not None else None
    if limits is None:
        return False
    others = session.execute(
        select(func.count()).where(Run.owner_id == run.owner_id, Run.status == "running", Run.id != run.id)
    ).scalar_one()
    if others < limits["running_runs"]:
        if run.started_at == run.heartbeat_at:  # set by this lease; another run may have finished since
            run.started_at = utcnow()
        return False
    session.execute(
        update(Run)
        .where(Run.id == run.id, Run.worker == run.worker, Run.status == "running")
        .values(
            status="queued",
            worker=None,
            heartbeat_at=None,
            attempts=Run.attempts - 1,
            # the lease set started_at with its heartbeat when the run had never started
            started_at=None if run.started_at == run.heartbeat_at else run.started_at,
        )
        .execution_options(synchronize_session=False)
    )
    return True
