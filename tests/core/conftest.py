"""One intra-op thread for the trainer's tests: on a machine shared by many processes, two OpenMP threads that
wait for each other run tiny models about ten times slower than one."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
