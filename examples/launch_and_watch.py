"""Launch a ring8 run and watch it train, with nothing but httpx.

GANFORGE_URL=http://127.0.0.1:8000 GANFORGE_TOKEN=... python examples/launch_and_watch.py [steps]
"""

from __future__ import annotations

import os
import sys
import time

import httpx

url = os.environ.get("GANFORGE_URL", "http://127.0.0.1:8000")
token = os.environ["GANFORGE_TOKEN"]
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


def reason(response: httpx.Response) -> str:
    """An error's `detail`: a sentence, or for a 422 a list of {"loc": ["body", field, ...], "msg": reason}."""
    detail = response.json()["detail"]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, error['loc'][1:])) or 'body'}: {error['msg']}" for error in detail)
    return str(detail)


with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
    response = api.post("/runs", json={"dataset": "ring8", "name": "example", "train": {"steps": steps}})
    if response.status_code != 201:
        sys.exit(f"{response.status_code}: {reason(response)}")  # e.g. 422: train.steps: Input should be ...
    run = response.json()
    print(f"queued {run['id']}")

    while run["status"] in ("queued", "running"):
        time.sleep(1)
        run = api.get(f"/runs/{run['id']}").json()
        p = run["progress"]
        losses = "  ".join(f"{k} {v:.3f}" for k, v in sorted(run["latest_metrics"].items()) if k.startswith("loss"))
        print(f"{run['status']:9} step {p['step']}/{p['total_steps']}  {p['images_per_sec'] or 0:.0f} img/s  {losses}")

    print(f"{run['id']} {run['status']}" + (f": {run['error']}" if run["error"] else ""))
    sys.exit(0 if run["status"] == "succeeded" else 1)
