"""A generated or trained policy as a callable: flat weights + spec + observation statistics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from policygen.envs.stats import RunningStats
from policygen.policies.flat_mlp import MLPSpec, forward, to_module


@dataclass
class Policy:
    """``policy(obs) -> action`` for raw observations (normalisation inside)."""

    spec: MLPSpec
    theta: torch.Tensor
    obs_mean: np.ndarray
    obs_std: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_stats(cls, spec: MLPSpec, theta: torch.Tensor, stats: RunningStats | None,
                   meta: dict | None = None) -> Policy:
        mean = stats.mean.copy() if stats is not None else np.zeros(spec.obs_dim)
        std = stats.std.copy() if stats is not None else np.ones(spec.obs_dim)
        return cls(spec, theta.detach().float().reshape(-1).clone(), mean, std, dict(meta or {}))

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor((np.asarray(obs, dtype=np.float64) - self.obs_mean) / self.obs_std,
                            dtype=torch.float32)
        single = x.dim() == 1
        x = x.reshape(-1, self.spec.obs_dim)
        a = forward(self.spec, self.theta.unsqueeze(0).expand(len(x), -1), x).numpy()
        return a[0] if single else a

    def to_module(self) -> torch.nn.Module:
        """A plain torch module mapping raw observations to actions."""
        return NormalizedPolicy(to_module(self.spec, self.theta), self.obs_mean, self.obs_std)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta.contiguous(), "obs_mean": torch.from_numpy(self.obs_mean.copy()),
                "obs_std": torch.from_numpy(self.obs_std.copy())}

    def metadata(self) -> dict[str, str]:
        return {"format": "policygen-policy", "version": "1", "spec": json.dumps(self.spec.to_dict()),
                "meta": json.dumps(self.meta)}


class NormalizedPolicy(torch.nn.Module):
    """Raw observation (any float dtype) -> action (float32). Normalises in float64 like ``Policy.__call__``:
    a float32 normalisation differs in the last bits, and over a 1000-step Hopper episode that difference
    grows into another trajectory (returns 2205 vs 2261 on one seed; bench/results/export-parity.json)."""

    def __init__(self, net: torch.nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.net = net
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs.to(torch.float64) - self.obs_mean) / self.obs_std
        return self.net(x.to(torch.float32))
