"""Conditional latent diffusion (Make-An-Agent): a FiLM-conditioned MLP denoiser over the flattened latent
tokens, trained to predict the clean sample, with diffusers' DDIM scheduler (cosine schedule).

``diffusers`` is imported lazily (it is the ``diffusion`` extra): the schedule is theirs, not rewritten here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from policygen.errors import PolicygenError


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features ``(B, dim)`` of integer timesteps ``t (B,)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _FiLMBlock(nn.Module):
    def __init__(self, width: int, cond_width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(cond_width, 2 * width)
        self.lin = nn.Linear(width, width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(c).chunk(2, dim=-1)
        return h + self.lin(nn.functional.silu(self.norm(h) * (1 + scale) + shift))


class Denoiser(nn.Module):
    """``x_t (B, D)``, ``t (B,)``, ``cond (B, C)`` -> the predicted clean ``x_0 (B, D)``."""

    def __init__(self, x_dim: int, cond_dim: int, width: int = 256, blocks: int = 3, t_dim: int = 64):
        super().__init__()
        self.t_dim = t_dim
        self.inp = nn.Linear(x_dim, width)
        self.cond = nn.Sequential(nn.Linear(t_dim + cond_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(_FiLMBlock(width, width) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, x_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = nn.functional.silu(self.cond(torch.cat([timestep_features(t, self.t_dim), cond], dim=-1)))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h)


def ddim_scheduler(train_timesteps: int = 100):
    """diffusers' DDIM scheduler: cosine (squaredcos_cap_v2) betas, the model predicts the clean sample."""
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        raise PolicygenError("Make-An-Agent needs diffusers' DDIM scheduler: "
                             "pip install 'policygen[diffusion]'") from None
    return DDIMScheduler(num_train_timesteps=train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type="sample", clip_sample=False, set_alpha_to_one=True)


def diffusion_loss(model: Denoiser, scheduler, x0: torch.Tensor, cond: torch.Tensor,
                   gen: torch.Generator | None = None) -> torch.Tensor:
    """MSE between the clean sample and the model's prediction from a noised one at a random timestep."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    return nn.functional.mse_loss(model(scheduler.add_noise(x0, noise, t), t, cond), x0)


@torch.no_grad()
def sample(model: Denoiser, scheduler, cond: torch.Tensor, x_dim: int, steps: int = 10,
           gen: torch.Generator | None = None) -> torch.Tensor:
    """DDIM sampling (eta 0) of ``len(cond)`` clean samples ``(B, x_dim)`` in ``steps`` steps."""
    scheduler.set_timesteps(steps)
    x = torch.randn((len(cond), x_dim), generator=gen)
    for t in scheduler.timesteps:
        x0 = model(x, t.expand(len(cond)), cond)
        x = scheduler.step(x0, t, x, eta=0.0).prev_sample
    return x
