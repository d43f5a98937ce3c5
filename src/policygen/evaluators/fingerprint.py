"""Policy fingerprinting: a value function V(theta) that looks at what a policy *does*, not at its weights.

A set of learnable probing states (in normalised observation space, initialised U[0, 1)) is fed to
every policy; the policy's actions at those states, flattened, are its fingerprint; an MLP maps the
fingerprint to the predicted return. Everything is batched over thetas and differentiable both in
theta (the generator learns through it) and in the probing states (the evaluator learns where to look).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, forward

PROBE_INITS = {"uniform": torch.rand, "normal": torch.randn}


class FingerprintEvaluator(nn.Module):
    """``V(thetas (B, P)) -> (B,)``: probing states -> probing actions -> MLP [n_probe * act, hidden..., 1].

    spec: the policies being evaluated.
    n_probe: number of learnable probing states (paper: 200).
    hidden: widths of the value MLP, ReLU (paper: (256, 256)).
    probe_init: "uniform" (paper: U[0, 1), only the positive orthant of normalised observation space) or
        "normal" (N(0, I): the distribution of normalised observations, both signs of every feature).
    """

    def __init__(self, spec: MLPSpec, n_probe: int = 200, hidden: Sequence[int] = (256, 256),
                 probe_init: str = "uniform"):
        super().__init__()
        if int(n_probe) < 1:
            raise PolicygenError(f"the evaluator needs at least 1 probing state, got n_probe={n_probe!r}")
        if any(int(h) < 1 for h in hidden):
            raise PolicygenError(f"evaluator hidden widths must be positive integers, got {tuple(hidden)}")
        if probe_init not in PROBE_INITS:
            raise PolicygenError(f"probe_init {probe_init!r} is not one of {list(PROBE_INITS)}")
        self.spec = spec
        self.probes = nn.Parameter(PROBE_INITS[probe_init](int(n_probe), spec.obs_dim))
        sizes = [int(n_probe) * spec.act_dim, *(int(h) for h in hidden), 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def fingerprint(self, thetas: torch.Tensor, detach_probes: bool = False) -> torch.Tensor:
        """thetas (B, P) -> probing actions (B, n_probe * act_dim): a policy embedding (for maps, PCA).
        ``detach_probes``: no gradient reaches the probing states."""
        probes = self.probes.detach() if detach_probes else self.probes
        # expanded explicitly: a shared (S, obs) input would be read as per-policy obs when S == B
        probes = probes.unsqueeze(0).expand(thetas.shape[0], -1, -1)
        acts = forward(self.spec, thetas, probes)  # (B, n_probe, act_dim)
        return acts.reshape(thetas.shape[0], -1)

    def forward(self, thetas: torch.Tensor) -> torch.Tensor:
        """thetas (B, P) -> predicted returns (B,)."""
        return self.mlp(self.fingerprint(thetas)).squeeze(-1)

    def value_parameters(self) -> list[nn.Parameter]:
        """Parameters of the value MLP only (without the probing states)."""
        return list(self.mlp.parameters())
