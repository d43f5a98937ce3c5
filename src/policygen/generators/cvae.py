"""A conditional-VAE policy generator (UDRLPG's optional variant for multimodal return regions).

Hindsight regression ``MSE(G(c), theta)`` fits the *mean* of the policies that earned a return c. Where
those policies differ (many ways to fall early, a noise direction that breaks a good policy), the mean is
none of them, and often a better policy than any: an InvertedPendulum G commanded 2 earned ~200 (README,
UDRLPG calibration). The CVAE gives G a latent ``z``: ``G(c, z)`` is the same hypernetwork with the command
widened to ``[c ; z]``, trained on ``MSE(G(c, z), theta) + kl_weight * KL(q(z | theta, c) || N(0, I))``
with ``z ~ q`` (reparameterised), so each mode can get its own ``z``; ``z ~ N(0, I)`` then samples one.

The encoder does not read the raw weights (70k inputs for a 2x256 Hopper policy, and hidden-unit
permutations make weights a poor description of behaviour): it reads what the policy does, its actions at
fixed N(0, I) probing states (normalised observation space), as GoGePo's evaluator does with learned
ones, plus c. The official UDRLPG code's variant (latent 512) is not public in detail; this encoder is
policygen's choice, documented in docs/udrlpg.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from policygen.errors import PolicygenError
from policygen.generators.hypernetwork import HyperNetwork
from policygen.policies.flat_mlp import MLPSpec, forward


class ConditionalVAEGenerator(nn.Module):
    """``forward(commands (B, 1), z (B, latent) | None) -> thetas (B, P)``; ``z=None`` is the prior mean 0,
    so the deterministic generator's callers work unchanged.

    latent_dim: size of z. n_probe: probing states of the encoder. encoder_hidden: its ReLU MLP widths.
    The remaining arguments are the decoder's (``HyperNetwork``).
    """

    def __init__(self, spec: MLPSpec, latent_dim: int, chunk: int, embed_dim: int, hidden: Sequence[int],
                 output_scaling: bool, n_probe: int = 64, encoder_hidden: Sequence[int] = (256,)):
        super().__init__()
        if int(latent_dim) < 1 or int(n_probe) < 1 or any(int(h) < 1 for h in encoder_hidden):
            raise PolicygenError(f"cvae latent_dim and n_probe must be positive integers and encoder widths "
                                 f"positive, got {latent_dim!r}, {n_probe!r}, {tuple(encoder_hidden)}")
        self.spec, self.latent_dim = spec, int(latent_dim)
        self.decoder = HyperNetwork(spec, 1 + self.latent_dim, chunk, embed_dim, hidden, output_scaling)
        # fixed, and saved with the model: the encoder's input must mean the same thing after a resume
        self.register_buffer("probes", torch.randn(int(n_probe), spec.obs_dim))
        sizes = [int(n_probe) * spec.act_dim + 1, *(int(h) for h in encoder_hidden), 2 * self.latent_dim]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        self.encoder = nn.Sequential(*layers[:-1])

    def forward(self, commands: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        c = torch.as_tensor(commands, dtype=self.probes.dtype).reshape(-1, 1)
        if z is None:
            z = c.new_zeros(c.shape[0], self.latent_dim)
        if z.shape != (c.shape[0], self.latent_dim):
            raise PolicygenError(f"latents must have shape ({c.shape[0]}, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(torch.cat([c, z], dim=1))

    def encode(self, commands: torch.Tensor, thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, latent), of q(z | theta, c)."""
        b = thetas.shape[0]
        acts = forward(self.spec, thetas, self.probes.unsqueeze(0).expand(b, -1, -1))
        high = self.spec.high_tensor(acts.dtype)
        x = torch.cat([(acts / high).reshape(b, -1), commands.reshape(b, 1).to(acts.dtype)], dim=1)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 5.0)

    def loss(self, commands: torch.Tensor, thetas: torch.Tensor, kl_weight: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, float, float]:
        """The training loss, and its reconstruction MSE (per parameter) and KL (per policy, nats) parts."""
        mu, logvar = self.encode(commands, thetas)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = F.mse_loss(self(commands, z), thetas)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
        return recon + kl_weight * kl, recon.item(), kl.item()

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` latents from the prior N(0, I)."""
        return torch.randn(int(n), self.latent_dim, generator=generator)
