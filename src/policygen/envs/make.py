"""Environment ids, their checks, and the return conventions the papers use."""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from policygen.errors import PolicygenError

# +reward per step for staying alive; the official GoGePo/UDRLPG code subtracts it from training returns.
SURVIVAL_BONUS = {"Hopper": 1.0, "Walker2d": 1.0, "Ant": 1.0, "Humanoid": 5.0, "HumanoidStandup": 0.0}
RETURN_CONVENTIONS = ("standard", "no_survival_bonus")

ENVPOOL_ONLY = {
    # prefix -> (what to install, env kwargs the domain defaults to)
    # MetaWorld v3 ships inside envpool (the `metaworld` package pins mujoco 3.3.0 and fails under 4.0).
    # Goals are made observable: envpool's default hides them (last 3 obs entries 0) while it draws a new
    # goal every reset, which no feed-forward policy can reach (the common "goal-observable" variant).
    "MetaWorld/": ("envpool (pip install envpool; it has the 50 MetaWorld v3 tasks built in)",
                   {"partially_observable": False}),
}
"""Env id prefixes that only EnvPool runs (no Gymnasium registration), with their default env kwargs."""


def envpool_only(env_id: str) -> tuple[str, dict] | None:
    """``(install hint, default kwargs)`` when ``env_id`` runs only through EnvPool, else None."""
    return next((v for k, v in ENVPOOL_ONLY.items() if env_id.startswith(k)), None)


def domain_kwargs(env_id: str, env_kwargs: dict | None) -> dict:
    """The env kwargs to build ``env_id`` with: its domain's defaults, overridden by the user's."""
    only = envpool_only(env_id)
    return {**(only[1] if only else {}), **(env_kwargs or {})}


@dataclass(frozen=True)
class EnvInfo:
    """What an algorithm needs to know of an environment, without holding one."""

    env_id: str
    obs_dim: int
    act_dim: int
    action_high: tuple[float, ...]
    max_episode_steps: int
    survival_bonus: float
    success_signal: bool = False
    """The env reports ``info["success"]`` per step (MetaWorld): the engine then records episode success."""

    def to_dict(self) -> dict:
        return {**self.__dict__, "action_high": list(self.action_high)}


def survival_bonus(env_id: str, env_kwargs: dict | None = None) -> float:
    base = env_id.split("-")[0]
    if env_kwargs and "healthy_reward" in env_kwargs:
        return float(env_kwargs["healthy_reward"])
    return SURVIVAL_BONUS.get(base, 0.0)


LEAN_ENVPOOL_DOMAINS = ("mujoco.gym", "mujoco.metaworld", "classic_control", "box2d")
"""The EnvPool domains whose registrations ``import_envpool`` loads first: the continuous-control ones."""
_envpool_state: dict = {}


def import_envpool(env_id: str | None = None):
    """EnvPool's registry (``make``, ``make_spec``, ``list_all_envs``), or None when EnvPool is not installed.

    ``import envpool`` registers all 17 of EnvPool's domains, and its Jumanji renderer imports
    matplotlib.pyplot: ~1.7 s of every command that touches an environment. Here the first import runs only
    the registrations of ``LEAN_ENVPOOL_DOMAINS`` (~0.4 s), with the package module created but its
    __init__ not yet run. The package completes itself (runs EnvPool's own __init__, registering the rest)
    as soon as anything reads an attribute it lacks (``envpool.make`` in other code), or here when
    ``env_id`` is not among the lean registrations, so no id is ever missed. Anything unexpected in
    EnvPool's layout falls back to the plain import."""
    if "registry" not in _envpool_state:
        _envpool_state["registry"] = _lean_envpool() or _full_envpool()
    registry = _envpool_state["registry"]
    if registry is not None and env_id is not None and env_id not in registry.list_all_envs():
        _complete_envpool()
    return registry


def _full_envpool():
    try:
        import envpool  # noqa: F401
        import envpool.registration
    except ImportError:
        return None
    return envpool.registration


def _lean_envpool():
    if "envpool" in sys.modules:  # imported already (by other code): use it as it is
        return None
    try:
        spec = importlib.util.find_spec("envpool")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return None
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["envpool"] = pkg
        for domain in LEAN_ENVPOOL_DOMAINS:
            importlib.import_module(f"envpool.{domain}.registration")
        registry = importlib.import_module("envpool.registration")
        if not all(callable(getattr(registry, f, None)) for f in ("make", "make_spec", "list_all_envs")):
            raise ImportError("envpool.registration lacks make/make_spec/list_all_envs")
    except Exception:  # another EnvPool layout: forget the partial package, take the plain import
        for name in [m for m in sys.modules if m == "envpool" or m.startswith("envpool.")]:
            del sys.modules[name]
        return None

    def complete_on_access(name: str):
        if _envpool_state.get("completing"):
            raise AttributeError(f"module 'envpool' has no attribute {name!r}")
        _complete_envpool()
        return getattr(pkg, name)

    pkg.__getattr__ = complete_on_access
    _envpool_state["lean"] = (pkg, spec)
    return registry


def _complete_envpool() -> None:
    """Run EnvPool's own __init__ in the lean package (every domain registered, its attributes set)."""
    lean = _envpool_state.pop("lean", None)
    if lean is None:
        return
    pkg, spec = lean
    _envpool_state["completing"] = True
    try:
        spec.loader.exec_module(pkg)
    finally:
        _envpool_state["completing"] = False
    del pkg.__getattr__


def _envpool_ids(env_id: str | None = None) -> list[str] | None:
    registry = import_envpool(env_id)
    return None if registry is None else list(registry.list_all_envs())


def _close_ids(env_id: str, ids: list[str]) -> list[str]:
    """Up to 3 registered ids that look like a typo of env_id, compared without case; at difflib's default
    cutoff 0.6 (0.5 matched 'Foo-v0' to 'Acrobot-v1' on the version suffix alone)."""
    by_lower = {i.lower(): i for i in ids}
    return [by_lower[m] for m in difflib.get_close_matches(env_id.lower(), list(by_lower), n=3, cutoff=0.6)]


def check_env_id(env_id: str) -> None:
    if (only := envpool_only(env_id)) is not None:
        ids = _envpool_ids(env_id)
        if ids is None:
            raise PolicygenError(f"{env_id} runs only through EnvPool, which is not installed; install {only[0]}")
        if env_id not in ids:
            close = _close_ids(env_id, ids)
            hint = f"did you mean {', '.join(close)}?" if close else "see envpool.list_all_envs()"
            raise PolicygenError(f"unknown environment id {env_id!r}; {hint}")
        return
    if env_id in gym.registry:
        return
    close = _close_ids(env_id, list(gym.registry))
    hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.registry for the ids"
    raise PolicygenError(f"unknown environment id {env_id!r}{hint}")


def make_gymnasium(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None) -> gym.Env:
    check_env_id(env_id)
    if envpool_only(env_id):
        raise PolicygenError(f"{env_id} runs only through EnvPool's batched engine (policygen evaluate/train with a "
                             f".safetensors policy), not as a single Gymnasium env (render, .pt/.onnx files, SB3)")
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
    if envpool_only(env_id):
        return _envpool_info(env_id, env_kwargs)
    env = make_gymnasium(env_id, env_kwargs)
    try:
        return _check_spaces(env_id, env.observation_space, env.action_space,
                             env.spec.max_episode_steps if env.spec else None, env_kwargs, False)
    finally:
        env.close()


def _envpool_info(env_id: str, env_kwargs: dict | None) -> EnvInfo:
    check_env_id(env_id)
    try:
        spec = import_envpool(env_id).make_spec(env_id, **domain_kwargs(env_id, env_kwargs))
    except Exception as e:  # envpool raises bare errors for unknown kwargs
        raise PolicygenError(f"EnvPool cannot make {env_id!r} with {env_kwargs}: {e}") from None
    # MetaWorld tasks report info["success"]; the only EnvPool-only domain so far
    return _check_spaces(env_id, spec.observation_space, spec.action_space, spec.config.max_episode_steps,
                         env_kwargs, env_id.startswith("MetaWorld/"))


def _check_spaces(env_id: str, obs_space, act_space, max_steps: int | None, env_kwargs: dict | None,
                  success_signal: bool) -> EnvInfo:
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
    return EnvInfo(env_id, int(obs_space.shape[0]), int(act_space.shape[0]),
                   tuple(float(h) for h in high), int(max_steps or 1000), survival_bonus(env_id, env_kwargs),
                   success_signal)


def env_info(env_id: str, env_kwargs: dict | None = None) -> EnvInfo:
    """Dimensions, bounds and episode limit of ``env_id``; a clear error for what policygen cannot run."""
    # cached by the kwargs' JSON: values may be lists (ranges), which a tuple key could not hash
    try:
        key = json.dumps(env_kwargs or {}, sort_keys=True)
    except TypeError:  # e.g. numpy values from Python code: not cached
        return _env_info.__wrapped__(env_id, env_kwargs)
    return _env_info(env_id, key)
