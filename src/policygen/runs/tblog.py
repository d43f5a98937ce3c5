"""Optional TensorBoard event files beside metrics.csv: each metrics row as scalars, x-axis env steps.

Off the hot path: the trainer hands over the row it already built for metrics.csv, once per iteration;
``SummaryWriter`` queues the events and a background thread writes them. Imported lazily, so runs without
``--tensorboard`` never load it. On resume, events logged after the checkpoint are purged (``purge_step``).
"""

from __future__ import annotations

import math
from pathlib import Path

from policygen.errors import PolicygenError

SKIP = ("env_steps", "iteration")


class TensorBoardLog:
    def __init__(self, folder: str | Path, purge_step: int | None = None, flush_secs: int = 10):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PolicygenError("--tensorboard needs the tensorboard package: pip install 'policygen[tensorboard]'"
                                 ) from None
        self.writer = SummaryWriter(str(folder), purge_step=purge_step, flush_secs=flush_secs)

    def write(self, row: dict) -> None:
        step = int(row["env_steps"])
        for key, value in row.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self.writer.close()
