"""Where a run trains and in which precision, and the facts a run records to be reproducible.

Nothing here touches CUDA at import time: the worker's parent process must never initialise it.
"""

from __future__ import annotations

import functools
import platform
import sys
from typing import Any

import torch


def pick_device(requested: str) -> torch.device:
    """'auto' takes CUDA when there is one, else the CPU; 'cuda' without a GPU is a ValueError."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device: cuda was requested but this machine has no usable CUDA GPU")
        return torch.device("cuda")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX-BF16 instructions, where bf16 matmuls and convolutions run fast."""
    capability = torch.backends.cpu.get_cpu_capability()
    if "AMX" in capability or "BF16" in capability:
        return True
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False
    return False


def pick_precision(requested: str, device: torch.device, *, arch: str) -> str:
    """'fp32' or 'bf16'. auto takes bf16 for conv nets on CUDA with bf16 and on CPUs with fast bf16.

    The 2-D mlp stays in fp32 under auto: its modes are 0.01 wide, finer than bf16 resolves near 1.0, and a tiny
    mlp gains nothing from bf16. So does stylegan2 on a CPU: its modulated convolutions are many small ones, and
    autocast's casts around each cost more than bf16 saves (a 16 px step took 1.7-2x the CPU time of fp32's, on
    CPUs with AMX-BF16 too).
    """
    if requested in ("fp32", "bf16"):
        return requested
    if arch == "mlp" or (arch == "stylegan2" and device.type == "cpu"):
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def blas_threads() -> int:
    """The threads of the BLAS libraries loaded in this process (NumPy's, SciPy's), the most of them: what the
    scikit-learn fits of a run (k-means, mixtures, read-outs) use beside torch's threads."""
    from threadpoolctl import threadpool_info

    return max((int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def run_info(device: torch.device, precision: str, seed: int) -> dict[str, Any]:
    """Library versions, device, precision and seed: what a result needs to be reproduced."""
    import numpy
    import PIL
    import safetensors
    import sklearn

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "scikit_learn": sklearn.__version__,
        "safetensors": safetensors.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "precision": precision,
        "seed": seed,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "torch_threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
