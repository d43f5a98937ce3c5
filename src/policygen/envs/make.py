"""Environment ids, their checks, and the return conventions the papers use."""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from policygen.errors import PolicygenError

# +reward per step for staying alive; the official GoGePo/UDRLPG code subtracts it from training returns.
SURVIVAL_BONUS = {"Hopper": 1.0, "Walker2d": 1.0, "Ant": 1.0, "Humanoid": 5.0, "HumanoidStandup": 0.0}
RETURN_CONVENTIONS = ("standard", "no_survival_bonus")


@dataclass(frozen=True)
class EnvInfo:
    """What an algorithm needs to know of an environment, without holding one."""

    env_id: str
    obs_dim: int
    act_dim: int
    action_high: tuple[float, ...]
    max_episode_steps: int
    survival_bonus: float

    def to_dict(self) -> dict:
        return {**self.__dict__, "action_high": list(self.action_high)}


def survival_bonus(env_id: str, env_kwargs: dict | None = None) -> float:
    base = env_id.split("-")[0]
    if env_kwargs and "healthy_reward" in env_kwargs:
        return float(env_kwargs["healthy_reward"])
    return SURVIVAL_BONUS.get(base, 0.0)


def check_env_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.registry for the ids"
    raise PolicygenError(f"unknown environment id {env_id!r}{hint}")


def make_gymnasium(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None) -> gym.Env:
    check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    if render_mode:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except gym.error.Error as e:
        raise PolicygenError(f"cannot make {env_id!r}: {e}") from None
    except TypeError as e:  # an option the env's constructor does not take (--env-kwargs)
        raise PolicygenError(f"cannot make {env_id!r} with {env_kwargs}: {e}") from None


@functools.lru_cache(maxsize=64)
def _env_info(env_id: str, kwargs: str | dict) -> EnvInfo:
    env_kwargs = json.loads(kwargs) if isinstance(kwargs, str) else kwargs
    env = make_gymnasium(env_id, env_kwargs)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(act_space, gym.spaces.Box):
            raise PolicygenError(
                f"{env_id} has a {type(act_space).__name__} action space; policygen's policies need a "
                f"continuous Box action space (e.g. Hopper-v5, Pendulum-v1, MountainCarContinuous-v0)")
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise PolicygenError(
                f"{env_id} has observation space {obs_space}; policygen needs a flat 1-D Box observation")
        low, high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
        if not (np.all(np.isfinite(high)) and np.allclose(low, -high)):
            raise PolicygenError(f"{env_id} has action bounds [{low}, {high}]; policygen needs finite "
                                 f"symmetric bounds [-h, h]")
        steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
        return EnvInfo(env_id, int(obs_space.shape[0]), int(act_space.shape[0]),
                       tuple(float(h) for h in high), int(steps), survival_bonus(env_id, env_kwargs))
    finally:
        env.close()


def env_info(env_id: str, env_kwargs: dict | None = None) -> EnvInfo:
    """Dimensions, bounds and episode limit of ``env_id``; a clear error for what policygen cannot run."""
    # cached by the kwargs' JSON: values may be lists (ranges), which a tuple key could not hash
    try:
        key = json.dumps(env_kwargs or {}, sort_keys=True)
    except TypeError:  # e.g. numpy values from Python code: not cached
        return _env_info.__wrapped__(env_id, env_kwargs)
    return _env_info(env_id, key)
