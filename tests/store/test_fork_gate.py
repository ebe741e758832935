"""A process forked while another thread of its parent writes to SQLite can still write (store/db.py:
SQLiteForkGate). Each case runs in a fresh interpreter of its own, which forks: never the test process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# A thread holds a write transaction open for HOLD seconds; the main thread forks meanwhile; the child writes
# with a busy timeout of several times HOLD and exits 0 when its write lands, 1 when SQLite says it is locked.
SCRIPT = """
import os, sys, threading, time
from sqlalchemy import text
from store.db import make_engine

HOLD = 0.5
engine = make_engine("sqlite:///" + sys.argv[1])
with engine.begin() as connection:
    connection.execute(text("CREATE TABLE t (x INTEGER)"))
holding, forked = threading.Event(), threading.Event()

def write_and_hold():
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        holding.set()
        forked.wait(HOLD)  # without the gate the fork lands here, inside the transaction

thread = threading.Thread(target=write_and_hold)
thread.start()
holding.wait()
pid = os.fork()
if pid == 0:
    engine.dispose(close=False)  # as a worker's pool child does (worker/celery_app.py)
    try:
        with engine.begin() as connection:
            connection.execute(text("PRAGMA busy_timeout=3000"))
            connection.execute(text("INSERT INTO t VALUES (2)"))
    except Exception as error:
        print(error, flush=True)
        os._exit(1)
    os._exit(0)
forked.set()
thread.join()
_, status = os.waitpid(pid, 0)
with engine.connect() as connection:
    rows = sorted(connection.execute(text("SELECT x FROM t")).scalars())
print(os.waitstatus_to_exitcode(status), rows)
"""


def test_a_child_forked_during_a_parents_write_transaction_can_write(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "fork.db")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 [1, 2]", result.stdout
