"""Download a run's latest sample grid and its newest checkpoint, with nothing but httpx.

GANFORGE_URL=... GANFORGE_TOKEN=... python examples/download_artifacts.py RUN_ID [OUT_DIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

url = os.environ.get("GANFORGE_URL", "http://127.0.0.1:8000")
token = os.environ["GANFORGE_TOKEN"]
run_id = sys.argv[1]
out = Path(sys.argv[2] if len(sys.argv) > 2 else ".")
out.mkdir(parents=True, exist_ok=True)

with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
    grid = api.get(f"/runs/{run_id}/samples/latest.png")
    if grid.status_code != 200:
        sys.exit(f"{grid.status_code}: {grid.json()['detail']}")
    (out / "grid.png").write_bytes(grid.content)
    print(f"wrote {out / 'grid.png'}")

    checkpoints = api.get(f"/runs/{run_id}/checkpoints").json()["items"]
    if not checkpoints:
        sys.exit("the run has no checkpoint yet")
    newest = checkpoints[-1]
    path = out / f"{run_id}-{newest['step']}.safetensors"
    with api.stream("GET", newest["url"]) as response, path.open("wb") as f:  # checkpoints can be large
        response.raise_for_status()
        for chunk in response.iter_bytes():
            f.write(chunk)
    print(f"wrote {path} ({newest['size_bytes']} bytes, step {newest['step']})")
