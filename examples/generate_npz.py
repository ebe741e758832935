"""Generate 1,000 samples from a run's newest checkpoint as an .npz, with nothing but httpx.

GANFORGE_URL=... GANFORGE_TOKEN=... python examples/generate_npz.py RUN_ID [samples.npz]
"""

from __future__ import annotations

import io
import os
import sys
import time

import httpx
import numpy as np

url = os.environ.get("GANFORGE_URL", "http://127.0.0.1:8000")
token = os.environ["GANFORGE_TOKEN"]
run_id = sys.argv[1]
path = sys.argv[2] if len(sys.argv) > 2 else "samples.npz"

with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
    body = {"n": 1000, "seed": 1, "step": "latest", "format": "npz"}
    response = api.post(f"/runs/{run_id}/generations", json=body)
    if response.status_code != 202:
        sys.exit(f"{response.status_code}: {response.json()['detail']}")
    generation = response.json()
    while generation["status"] not in ("succeeded", "failed", "canceled"):
        time.sleep(0.5)
        generation = api.get(f"/generations/{generation['id']}").json()
    if generation["status"] != "succeeded":
        sys.exit(f"generation {generation['status']}: {generation['error']}")
    data = api.get(f"/generations/{generation['id']}/result").content

with open(path, "wb") as f:
    f.write(data)
samples = np.load(io.BytesIO(data))["samples"]
print(f"wrote {path}: samples {samples.shape} {samples.dtype}, range [{samples.min():.2f}, {samples.max():.2f}]")
