"""Exact running mean and variance of observations (Chan et al.'s parallel merge of Welford statistics)."""

from __future__ import annotations

import numpy as np
import torch


class RunningStats:
    """Mean and population variance of every observation seen, exact for any n, mergeable.

    The official GoGePo/UDRLPG code underestimates the variance for small n; this keeps the exact
    sum of squared deviations ``m2`` in float64 so ``var == np.var(all_data)`` up to rounding.
    """

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.count if self.count > 0 else np.ones_like(self.mean)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation with a floor, so constant dimensions normalise to 0, not inf."""
        std = np.sqrt(self.var)
        return np.where(std < 1e-8, 1.0, std)

    def merge(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Merge the statistics ``(count, mean, m2)`` of another sample into these."""
        if count == 0:
            return
        n = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / n)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / n)
        self.count = n

    def update(self, x: np.ndarray) -> None:
        """Add a batch ``x (N, dim)``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.shape[0])
        if len(x) == 0:
            return
        mean = x.mean(axis=0)
        self.merge(len(x), mean, ((x - mean) ** 2).sum(axis=0))

    def merge_stats(self, other: RunningStats) -> None:
        self.merge(other.count, other.mean, other.m2)

    @classmethod
    def from_mean_std(cls, mean: np.ndarray, std: np.ndarray) -> RunningStats:
        """Statistics that normalise exactly like ``(x - mean) / std`` (for a saved policy)."""
        s = cls(len(mean))
        s.count, s.mean, s.m2 = 1, np.asarray(mean, np.float64).copy(), np.asarray(std, np.float64) ** 2
        return s

    def copy(self) -> RunningStats:
        c = RunningStats(len(self.mean))
        c.count, c.mean, c.m2 = self.count, self.mean.copy(), self.m2.copy()
        return c

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=obs.dtype)
        std = torch.as_tensor(self.std, dtype=obs.dtype)
        return (obs - mean) / std

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": torch.from_numpy(self.mean.copy()),
                "m2": torch.from_numpy(self.m2.copy())}

    def load_state_dict(self, d: dict) -> None:
        self.count = int(d["count"])
        self.mean = np.asarray(d["mean"], dtype=np.float64).copy()
        self.m2 = np.asarray(d["m2"], dtype=np.float64).copy()
