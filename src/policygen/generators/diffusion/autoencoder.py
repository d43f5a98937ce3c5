"""Parameter autoencoder (Make-An-Agent): a flat policy vector <-> latent tokens, one token per layer chunk.

Each layer's parameters (its ``W`` then its ``b``, as in the flat layout) are cut into chunks of at most
``chunk`` numbers; chunk i has its own encoder ``R^{n_i} -> R^d`` (ending in LayerNorm) and decoder back, so the
latent is ``(n_chunks, d)`` tokens. Inputs are standardised per coordinate over the data set first.
Training adds the paper's noise augmentation: N(0, 0.001^2) on the inputs, N(0, 0.01^2) on the latents.
"""

from __future__ import annotations

import torch
from torch import nn

from policygen.policies.flat_mlp import MLPSpec


def layer_chunks(spec: MLPSpec, chunk: int) -> list[int]:
    """Sizes of the chunks, in flat-layout order: every layer split into near-equal pieces of <= ``chunk``."""
    sizes = []
    for o, i in spec.layer_shapes:
        n = o * i + (o if spec.bias else 0)
        k = -(-n // chunk)
        sizes += [n // k + (1 if j < n % k else 0) for j in range(k)]
    return sizes


def _mlp(sizes: list[int], norm_last: bool) -> nn.Sequential:
    mods: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            mods += [nn.LayerNorm(sizes[k + 1]), nn.LeakyReLU()]
    if norm_last:
        mods.append(nn.LayerNorm(sizes[-1]))
    return nn.Sequential(*mods)


class ParamAutoencoder(nn.Module):
    """``encode(thetas (B, P)) -> (B, n_chunks, d)``, ``decode`` back; thetas in the policy's own units."""

    def __init__(self, chunks: list[int], latent_dim: int = 16, hidden: int = 128,
                 input_noise: float = 0.001, latent_noise: float = 0.01):
        super().__init__()
        self.chunks, self.input_noise, self.latent_noise = list(chunks), input_noise, latent_noise
        self.encoders = nn.ModuleList(_mlp([n, hidden, latent_dim], norm_last=True) for n in chunks)
        self.decoders = nn.ModuleList(_mlp([latent_dim, hidden, n], norm_last=False) for n in chunks)
        self.register_buffer("param_mean", torch.zeros(sum(chunks)))
        self.register_buffer("param_std", torch.ones(sum(chunks)))

    def fit_normalisation(self, thetas: torch.Tensor) -> None:
        """Per-coordinate mean and std of the data set's parameters (a floor keeps constant ones finite)."""
        self.param_mean.copy_(thetas.mean(0))
        self.param_std.copy_(thetas.std(0).clamp_min(1e-3 * float(thetas.std()) + 1e-8))

    def encode_normalised(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.chunks, dim=-1)
        return torch.stack([enc(p) for enc, p in zip(self.encoders, parts, strict=True)], dim=1)

    def decode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([dec(z[:, k]) for k, dec in enumerate(self.decoders)], dim=-1)

    def encode(self, thetas: torch.Tensor) -> torch.Tensor:
        return self.encode_normalised((thetas - self.param_mean) / self.param_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_normalised(z) * self.param_std + self.param_mean

    def loss(self, thetas: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """MSE in standardised units, with noise on the inputs and on the latents."""
        x = (thetas - self.param_mean) / self.param_std
        noisy = x + self.input_noise * torch.randn(x.shape, generator=gen)
        z = self.encode_normalised(noisy)
        z = z + self.latent_noise * torch.randn(z.shape, generator=gen)
        return nn.functional.mse_loss(self.decode_normalised(z), x)
