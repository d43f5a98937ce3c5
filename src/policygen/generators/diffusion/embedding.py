"""Behaviour embedding (Make-An-Agent): a prompt trajectory and the outcome states it leads to, embedded so
that each trajectory matches its own outcome (InfoNCE over a batch, bilinear similarity).

The condition of the diffusion model is the two embeddings concatenated, ``(B, 2 * dim)``. With
``return_head``, a linear head also reads the record's (standardised) return off the trajectory embedding
(``loss(..., returns)``; policygen's addition, off by default).
Inputs arrive flat and already normalised (``prompt_features``).
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            mods += [nn.LayerNorm(sizes[k + 1]), nn.LeakyReLU()]
    return nn.Sequential(*mods)


class BehaviourEmbedding(nn.Module):
    """``traj (B, Dt)``, ``outcome (B, Do)`` -> unit embeddings ``(B, dim)`` each; ``condition`` concatenates."""

    def __init__(self, traj_dim: int, outcome_dim: int, dim: int = 64, hidden: int = 128,
                 temperature: float = 0.1, return_head: bool = False):
        super().__init__()
        self.traj_encoder = _mlp([traj_dim, hidden, hidden, dim])
        self.outcome_encoder = _mlp([outcome_dim, hidden, dim])
        self.bilinear = nn.Parameter(torch.eye(dim))
        self.temperature = temperature
        self.return_head = nn.Linear(dim, 1) if return_head else None

    def embed(self, traj: torch.Tensor, outcome: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zt = nn.functional.normalize(self.traj_encoder(traj), dim=-1)
        zo = nn.functional.normalize(self.outcome_encoder(outcome), dim=-1)
        return zt, zo

    def logits(self, traj: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        """``(B, B)`` similarity ``zt_i W zo_j / temperature``; the true pairs are on the diagonal."""
        return self._logits(*self.embed(traj, outcome))

    def _logits(self, zt: torch.Tensor, zo: torch.Tensor) -> torch.Tensor:
        return zt @ self.bilinear @ zo.T / self.temperature

    def loss(self, traj: torch.Tensor, outcome: torch.Tensor, returns: torch.Tensor | None = None,
             return_weight: float = 1.0) -> torch.Tensor:
        """Symmetric InfoNCE: each trajectory picks its outcome among the batch's, and the other way round.
        With ``returns (B,)`` (standardised), plus ``return_weight`` times the MSE of the return head's reading
        of each trajectory's embedding."""
        zt, zo = self.embed(traj, outcome)
        logits = self._logits(zt, zo)
        target = torch.arange(len(logits))
        loss = 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
        if returns is None:
            return loss
        if self.return_head is None:
            raise ValueError("this embedding was built without a return head")
        return loss + return_weight * nn.functional.mse_loss(self.return_head(zt).squeeze(-1), returns)

    def condition(self, traj: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.embed(traj, outcome), dim=-1)
