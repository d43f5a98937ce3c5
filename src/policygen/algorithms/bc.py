"""Behaviour cloning from behaviour prompts: the baseline Make-An-Agent is compared with.

The same prompt trajectories the generator is conditioned on become (state, action) pairs: the prompt
keeps the state of every ``state_every``-th step and every action, so state ``i`` pairs with action
``i * state_every``. A small MLP (``[obs, 64, 64, act]``, tanh, ``tanh(out) * action_high``) regresses the
actions on the states normalised by the pairs' own statistics (MSE, Adam, full batch). The result is a
FlatMLP policy, evaluated through the same engine as the generated ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policygen.buffers.policy_dataset import PromptLayout
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, forward, init_thetas
from policygen.policies.standalone import Policy


@dataclass
class BCConfig:
    """Behaviour cloning settings (a baseline: small, fixed, the same for every task)."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the cloned policy."""
    steps: int = 1500
    """Full-batch Adam steps."""
    lr: float = 3e-3
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """L2 penalty on the weights (a few hundred pairs: keeps the fit from memorising)."""
    min_std: float = 1e-2
    """Floor of the per-dimension state std used for normalising (dims constant in the prompts, e.g. a
    fixed object, would otherwise blow up when they move at test time)."""


def bc_pairs(prompts: dict[str, np.ndarray], layout: PromptLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(states (M, obs), actions (M, act))`` of the prompts' opening windows (padding left out when the
    prompt says how long its episode was, ``prompt_len``)."""
    obs, acts = np.asarray(prompts["prompt_obs"]), np.asarray(prompts["prompt_actions"])
    k, s = obs.shape[:2]
    steps = np.arange(s) * layout.state_every
    if steps[-1] >= acts.shape[1]:
        raise PolicygenError(f"prompt layout {layout} does not match prompts of {acts.shape[1]} actions")
    lens = np.asarray(prompts.get("prompt_len", np.full(k, acts.shape[1])))
    keep = steps[None, :] < lens[:, None]
    states, actions = obs[keep], acts[:, steps][keep]
    if len(states) == 0 or not (np.isfinite(states).all() and np.isfinite(actions).all()):
        raise PolicygenError("behaviour cloning needs finite prompt states and actions; got none or NaN/inf")
    return states.astype(np.float64), actions.astype(np.float32)


def train_bc(states: np.ndarray, actions: np.ndarray, action_high: tuple[float, ...], cfg: BCConfig | None = None,
             seed: int = 0) -> tuple[Policy, float]:
    """A policy regressing ``actions (M, act)`` on ``states (M, obs)``; and its final training MSE."""
    cfg = cfg or BCConfig()
    spec = MLPSpec(states.shape[1], actions.shape[1], tuple(cfg.hidden), "tanh", "tanh", tuple(action_high))
    mean, std = states.mean(0), np.maximum(states.std(0), cfg.min_std)
    x = torch.as_tensor((states - mean) / std, dtype=torch.float32)
    # targets inside the open tanh range: a clipped action of exactly +-high has no finite pre-activation
    high = np.asarray(action_high, np.float32)
    y = torch.as_tensor(np.clip(actions, -0.999 * high, 0.999 * high))
    theta = init_thetas(spec, 1, torch.Generator().manual_seed(seed)).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss = torch.zeros(())
    for _ in range(cfg.steps):
        loss = torch.mean((forward(spec, theta, x)[0] - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mse = float(loss.detach())
    meta = {"algorithm": "behaviour-cloning", "pairs": int(len(states)), "seed": seed, "train_mse": mse}
    return Policy(spec, theta.detach()[0].clone(), mean, std, meta), mse
