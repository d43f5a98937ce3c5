"""Make-An-Agent's three networks, their settings, and the tensors they learn from.

Settings are one dataclass (``MakeAnAgentConfig``); everything scaled down from the official sizes is listed
in docs/make_an_agent.md. ``MakeAnAgent`` bundles the trained networks of a run and turns behaviour prompts
into policy parameter vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policygen.buffers.policy_dataset import PromptLayout
from policygen.errors import PolicygenError
from policygen.generators.diffusion.autoencoder import ParamAutoencoder
from policygen.generators.diffusion.denoiser import Denoiser, ddim_scheduler, sample
from policygen.generators.diffusion.embedding import BehaviourEmbedding
from policygen.policies.flat_mlp import MLPSpec


@dataclass
class MakeAnAgentConfig:
    """Make-An-Agent at CPU scale (official sizes in docs/make_an_agent.md)."""

    chunk: int = 64
    """Parameters per latent token at most: each layer is cut into chunks of this size (official: per layer)."""
    latent_dim: int = 16
    """Size of one latent token."""
    ae_hidden: int = 256
    """Hidden width of every chunk's encoder and decoder."""
    input_noise: float = 0.001
    """Noise augmentation on the (standardised) parameters while training the autoencoder (paper: 0.001)."""
    latent_noise: float = 0.01
    """Noise augmentation on the latents while training the autoencoder (paper: 0.01)."""
    ae_steps: int = 3000
    """AdamW steps of the autoencoder."""
    ae_lr: float = 1e-3
    """Learning rate of the autoencoder."""
    emb_dim: int = 64
    """Size of each behaviour embedding (trajectory, outcome); the condition is twice this (paper: 128 + 128)."""
    emb_hidden: int = 128
    """Hidden width of the trajectory and outcome encoders."""
    temperature: float = 0.1
    """Temperature of the InfoNCE logits."""
    emb_steps: int = 1500
    """AdamW steps of the behaviour embedding."""
    emb_lr: float = 1e-3
    """Learning rate of the behaviour embedding."""
    emb_return_weight: float = 0.0
    """Weight of an auxiliary loss (not in the paper, 0: off) that makes the trajectory embedding predict the
    record's return (standardised over the data set) through a linear head, so the condition carries the
    prompt's quality. For one task whose prompt should be reproduced in quality (locomotion); on a set of
    tasks with different return scales it mixes them, so MetaWorld keeps 0."""
    den_width: int = 256
    """Width of the FiLM-conditioned MLP denoiser (paper: a 1-D conv UNet)."""
    den_blocks: int = 3
    """Residual FiLM blocks of the denoiser."""
    diff_steps: int = 6000
    """AdamW steps of the latent diffusion model."""
    diff_lr: float = 1e-3
    """Learning rate of the diffusion model."""
    cond_noise: float = 0.0
    """Std of Gaussian noise added to the condition (unit embeddings) while training the diffusion model
    (not in the paper, 0: off): the denoiser then answers smoothly for prompts whose embedding lies between
    or beside the training records' (a run never seen) instead of only at the records' own."""
    train_timesteps: int = 100
    """Diffusion timesteps while training (paper: 100, cosine schedule)."""
    sample_steps: int = 10
    """DDIM steps when generating (paper: 10)."""
    batch: int = 64
    """Records per training step of every stage."""
    weight_decay: float = 1e-4
    """AdamW weight decay of every stage."""
    checkpoint_every: int = 500
    """Save each stage every this many steps (a killed run resumes from there)."""

    def __post_init__(self):
        for name in ("input_noise", "latent_noise", "emb_return_weight", "cond_noise", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def prompt_features(spec: MLPSpec, ref_mean: np.ndarray, ref_std: np.ndarray, prompt_obs: np.ndarray,
                    prompt_actions: np.ndarray, outcome_obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat, normalised encoder inputs: trajectory ``(N, S*obs + T*act)`` and outcome ``(N, K*obs)``.

    States are normalised with the data set's reference statistics and clipped to +-10; actions are
    divided by the action bound."""
    norm = lambda o: np.clip((np.asarray(o, np.float64) - ref_mean) / ref_std, -10, 10)  # noqa: E731
    high = spec.high_tensor(torch.float64).numpy()
    n = len(prompt_obs)
    traj = np.concatenate([norm(prompt_obs).reshape(n, -1), (prompt_actions / high).reshape(n, -1)], axis=1)
    return (torch.as_tensor(traj, dtype=torch.float32),
            torch.as_tensor(norm(outcome_obs).reshape(n, -1), dtype=torch.float32))


def build_networks(cfg: MakeAnAgentConfig, chunks: list[int], spec: MLPSpec, layout: PromptLayout):
    """Fresh autoencoder, embedding and denoiser for a data set of ``spec`` policies and ``layout`` prompts."""
    ae = ParamAutoencoder(chunks, cfg.latent_dim, cfg.ae_hidden, cfg.input_noise, cfg.latent_noise)
    traj_dim = layout.n_states * spec.obs_dim + layout.steps * spec.act_dim
    emb = BehaviourEmbedding(traj_dim, layout.outcome_states * spec.obs_dim, cfg.emb_dim, cfg.emb_hidden,
                             cfg.temperature, return_head=cfg.emb_return_weight > 0)
    den = Denoiser(len(chunks) * cfg.latent_dim, 2 * cfg.emb_dim, cfg.den_width, cfg.den_blocks)
    return ae, emb, den


class MakeAnAgent:
    """The trained networks of a run: behaviour prompts in, policy parameter vectors out."""

    def __init__(self, cfg: MakeAnAgentConfig, spec: MLPSpec, layout: PromptLayout, ae: ParamAutoencoder,
                 emb: BehaviourEmbedding, den: Denoiser, latent_mean: torch.Tensor, latent_std: torch.Tensor,
                 ref_mean: np.ndarray, ref_std: np.ndarray):
        self.cfg, self.spec, self.layout = cfg, spec, layout
        self.ae, self.emb, self.den = ae.eval(), emb.eval(), den.eval()
        self.latent_mean, self.latent_std = latent_mean, latent_std
        self.ref_mean, self.ref_std = ref_mean, ref_std
        self.scheduler = ddim_scheduler(cfg.train_timesteps)

    @torch.no_grad()
    def generate(self, prompts: dict[str, np.ndarray], n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """``n`` parameter vectors ``(n, P)``: policy i from prompt ``i % K``; and that prompt index ``(n,)``."""
        if n < 1:
            raise PolicygenError(f"--n must be at least 1, got {n}")
        traj, out = prompt_features(self.spec, self.ref_mean, self.ref_std, prompts["prompt_obs"],
                                    prompts["prompt_actions"], prompts["outcome_obs"])
        which = np.arange(n) % len(traj)
        cond = self.emb.condition(traj, out)[torch.as_tensor(which)]
        gen = torch.Generator().manual_seed(seed)
        z = sample(self.den, self.scheduler, cond, self.latent_mean.numel(), self.cfg.sample_steps, gen)
        z = z * self.latent_std + self.latent_mean
        thetas = self.ae.decode(z.reshape(n, len(self.ae.chunks), -1))
        return thetas, which
