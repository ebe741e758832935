"""How live the clients feel, against a running server (`ganforge serve`, or any URL).

    GANFORGE_URL=http://127.0.0.1:8000 GANFORGE_TOKEN=... .venv/bin/python bench/clients.py [--steps 2000]

Measures: the wall time of CLI commands (process start included); for one ring8 run, POST → first progress
event over the event stream, and the gaps between progress events as the client receives them; the dashboard
in Debian's Chromium: runs table drawn after navigation, run page's sample grid shown after navigation.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ganforge.client import Ganforge

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cli_seconds(*args: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ganforge", *args], check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    url, token = os.environ["GANFORGE_URL"], os.environ["GANFORGE_TOKEN"]
    print(f"load average before: {load()}")

    with Ganforge(url, token) as client:
        run = client.runs.create({"dataset": "ring8", "name": "bench-clients", "train": {"steps": args.steps}})
        posted = time.perf_counter()
        first = None
        arrivals = []
        for event in client.runs.events(run.id):
            if event.event == "progress":
                now = time.perf_counter()
                first = first if first is not None else now - posted
                arrivals.append(now)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        print(f"POST /runs → first progress event: {first:.2f} s")
        print(
            f"progress events received: {len(arrivals)}; gap median {statistics.median(gaps):.2f} s, "
            f"max {max(gaps):.2f} s"
        )
        run_id = run.id

    listing = cli_seconds("runs", "list", "--json")
    print(f"CLI `runs list --json` (median of 5, process start included): {listing:.2f} s")
    print(f"CLI `runs show ID`: {cli_seconds('runs', 'show', run_id):.2f} s")

    from playwright.sync_api import sync_playwright

    chromium_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=chromium_args)
        page = browser.new_page()
        page.goto(f"{url}/#/signin")
        page.evaluate(f"localStorage.setItem('ganforge.token', {token!r})")
        start = time.perf_counter()
        page.goto(f"{url}/#/runs")
        page.wait_for_selector(f'tr[data-run-id="{run_id}"]')
        table = time.perf_counter() - start
        start = time.perf_counter()
        page.goto(f"{url}/#/runs/{run_id}")
        page.wait_for_function(
            "() => { const i = document.getElementById('sample-img'); return i && i.complete && i.naturalWidth > 0; }"
        )
        grid = time.perf_counter() - start
        browser.close()
    print(f"dashboard: runs table drawn {table:.2f} s after navigation; run page grid shown after {grid:.2f} s")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
