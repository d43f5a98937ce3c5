"""Episodes of one callable policy (``act(obs) -> action`` on raw observations) on a plain Gymnasium env.

Used for files that only their own runtime can run (TorchScript, ONNX), for maps and for rendering; episode ``i``
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
    actions: list[np.ndarray] = field(default_factory=list)
    """Per episode, the actions taken (length, act_dim), when ``keep_actions``."""
    observations: list[np.ndarray] = field(default_factory=list)
    """Per episode, the raw observations acted on (length, obs_dim), when ``keep_actions``."""


def play(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, seed: int = 0,
         env_kwargs: dict | None = None, keep_actions: bool = False, max_steps: int | None = None) -> Episodes:
    """Run ``episodes`` episodes of ``act``; with ``keep_actions`` also the observations and actions."""
    if episodes < 1:
        raise PolicygenError(f"--episodes must be at least 1, got {episodes}")
    env = make_gymnasium(env_id, env_kwargs)
    out = Episodes()
    try:
        for i in range(episodes):
            ret, length, acts = _episode(env, act, seed + i, keep_actions, max_steps)
            out.returns.append(ret)
            out.lengths.append(length)
            if keep_actions:
                out.actions.append(np.asarray([a for _, a in acts]))
                out.observations.append(np.asarray([o for o, _ in acts]))
    finally:
        env.close()
    return out


def _episode(env, act, seed: int, keep_actions: bool, max_steps: int | None):
    obs, _ = env.reset(seed=seed)
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
    return ret, t, acts


def play_frames(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, seed: int,
                env_kwargs: dict | None, size: tuple[int, int], max_steps: int | None, mujoco_frames, is_mujoco):
    """Per episode ``(frames, return so far at each frame, length)``; frames ``(H, W, 3)`` uint8, length + 1.

    MuJoCo envs are drawn by ``mujoco_frames(env, width, height)``; others by their ``render()``.
    """
    if episodes < 1:
        raise PolicygenError(f"--episodes must be at least 1, got {episodes}")
    env = make_gymnasium(env_id, env_kwargs)
    if is_mujoco(env):
        grab = mujoco_frames(env, *size)
    else:
        env.close()
        env = make_gymnasium(env_id, dict(env_kwargs or {}), render_mode="rgb_array")
        grab = None
    try:
        for i in range(episodes):
            yield _frames_episode(env, act, seed + i, max_steps, grab)
    finally:
        if grab is not None:
            grab.close()
        env.close()


def _frames_episode(env, act, seed: int, max_steps: int | None, grab):
    def frame() -> np.ndarray:
        return grab(env) if grab is not None else np.asarray(env.render())

    obs, _ = env.reset(seed=seed)
    frames, rets = [frame()], [0.0]
    ret, t, done = 0.0, 0, False
    while not done and (max_steps is None or t < max_steps):
        obs, r, term, trunc, _ = env.step(np.asarray(act(obs), dtype=np.float64))
        ret, t, done = ret + float(r), t + 1, bool(term or trunc)
        frames.append(frame())
        rets.append(ret)
    return frames, rets, t
