"""Episodes of one callable policy (``act(obs) -> action`` on raw observations) on a plain Gymnasium env.

Used for files that only their own runtime can run (TorchScript, ONNX) and for rendering; episode ``i``
starts from ``env.reset(seed=seed + i)``, so two policies played with the same seed see the same starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from policygen.envs.make import make_gymnasium
from policygen.errors import PolicygenError


@dataclass
class Episodes:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    frames: list[list[np.ndarray]] = field(default_factory=list)
    """Per episode, the RGB frames (H, W, 3) uint8: the reset state, then one per step (length + 1)."""
    actions: list[np.ndarray] = field(default_factory=list)
    """Per episode, the actions taken (length, act_dim), when ``keep_actions``."""
    observations: list[np.ndarray] = field(default_factory=list)
    """Per episode, the raw observations acted on (length, obs_dim), when ``keep_actions``."""


def play(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, seed: int = 0,
         env_kwargs: dict | None = None, render: bool = False, keep_actions: bool = False,
         max_steps: int | None = None, size: tuple[int, int] | None = None) -> Episodes:
    """Run ``episodes`` episodes of ``act``; frames are kept when ``render`` (offscreen rgb_array)."""
    if episodes < 1:
        raise PolicygenError(f"--episodes must be at least 1, got {episodes}")
    kwargs = dict(env_kwargs or {})
    if render and size:
        kwargs.update(width=int(size[0]), height=int(size[1]))
    env = make_gymnasium(env_id, kwargs, render_mode="rgb_array" if render else None)
    out = Episodes()
    try:
        for i in range(episodes):
            ret, length, frames, acts = _episode(env, act, seed + i, render, keep_actions, max_steps)
            out.returns.append(ret)
            out.lengths.append(length)
            if render:
                out.frames.append(frames)
            if keep_actions:
                out.actions.append(np.asarray([a for _, a in acts]))
                out.observations.append(np.asarray([o for o, _ in acts]))
    finally:
        env.close()
    return out


def _episode(env, act, seed: int, render: bool, keep_actions: bool, max_steps: int | None):
    obs, _ = env.reset(seed=seed)
    frames = [env.render()] if render else []
    acts, ret, t, done = [], 0.0, 0, False
    while not done and (max_steps is None or t < max_steps):
        a = np.asarray(act(obs), dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise PolicygenError(f"the policy gave a non-finite action {a} at step {t}")
        if keep_actions:
            acts.append((np.asarray(obs, dtype=np.float64), a))
        obs, r, term, trunc, _ = env.step(a)
        ret += float(r)
        t += 1
        done = bool(term or trunc)
        if render:
            frames.append(env.render())
    return ret, t, frames, acts
