"""What every algorithm provides, the run settings they share, and config overrides from the CLI."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from policygen.envs.make import EnvInfo
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.rollout.engine import RolloutEngine

MAX_ENVS = 65536
"""More environment slots than any machine steps at once; a larger request is a typo."""


@dataclass
class RunConfig:
    """Settings of a training run that do not depend on the algorithm."""

    env_id: str
    """Gymnasium id of a continuous-control task, e.g. Hopper-v5."""
    steps: int = 100_000
    """Budget of environment steps used for learning (evaluation episodes are not counted)."""
    seed: int = 0
    """Seed of everything random in the run; same seed and machine give the same numbers."""
    backend: str = "auto"
    """Rollout backend: auto (EnvPool when it has the task), envpool, gymnasium, or ray (the engine spread
    over Ray actors, each with auto environments inside)."""
    ray_address: str | None = None
    """With backend ray: the cluster to join (HOST:PORT of `ray start --head`, or auto); None starts a local one."""
    ray_workers: int = 0
    """With backend ray: actors (one CPU each) to spread the rollouts over; 0: one per CPU of the cluster."""
    num_envs: int = 64
    """Environment slots the engine steps together."""
    eval_every: int = 10_000
    """Evaluate every this many env steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic policy, frozen observation statistics)."""
    checkpoint_every: int = 20
    """Checkpoint every this many iterations (and at the end); a killed run resumes from the last one."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments for the environment constructor."""
    max_failures: int = 100
    """Episodes an environment may spoil (exception, NaN or inf, a hang) before the run stops with an error;
    each is marked failed, kept out of buffers and statistics, and counted in metrics.csv's ``failures``."""
    step_timeout: float = 60.0
    """Seconds one environment step may take before it counts as hung (Gymnasium backend; 0: no limit)."""
    torch_threads: int = 1
    """Threads of torch's own pool for the learning updates (0: torch's default). One, because the other
    core steps the physics: on this 2-core machine two torch threads made GoGePo's generator step 1.4-12x
    slower (12x when another job shared the cores; bench/results/gogepo-cost.md)."""
    env_threads: int = 0
    """EnvPool worker threads (0: min(num_envs, 2)); 1 lets two runs share a 2-core machine without
    oversubscribing it. The Gymnasium backend steps in this process and ignores it."""
    snapshots: int = 0
    """Also keep this many snapshots of the whole state, at evenly spaced env steps during the run
    (``checkpoints/snapshot-STEPS.safetensors``; the map draws them). A GoGePo checkpoint holds its buffer:
    ~120 MB at 30k Hopper-sized policies, so keep a few."""
    tensorboard: bool = False
    """Also write every metrics row as TensorBoard scalars to ``RUN_DIR/tensorboard/`` (x-axis env steps)."""

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "num_envs": 1, "eval_every": 1, "eval_episodes": 1, "checkpoint_every": 1,
                    "max_failures": 0, "torch_threads": 0, "env_threads": 0, "snapshots": 0}
        for name, low in at_least.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise PolicygenError(f"{name} must be an integer >= {low}, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise PolicygenError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.num_envs > MAX_ENVS or self.torch_threads > 1024 or self.env_threads > 1024:
            raise PolicygenError(f"num_envs must be <= {MAX_ENVS}, torch_threads and env_threads <= 1024, got "
                                 f"{self.num_envs}, {self.torch_threads}, {self.env_threads}")
        if not isinstance(self.step_timeout, int | float) or not 0 <= self.step_timeout < math.inf:
            raise PolicygenError(f"step_timeout must be a number of seconds >= 0 (0: off), got {self.step_timeout!r}")
        if not isinstance(self.env_id, str) or not isinstance(self.backend, str):
            raise PolicygenError(f"env_id and backend must be strings, got {self.env_id!r}, {self.backend!r}")
        if not isinstance(self.env_kwargs, dict):
            raise PolicygenError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}")


class Algorithm:
    """An ask/tell style learner: it holds no environment, only asks the engine to evaluate thetas."""

    name: ClassVar[str]
    Config: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Named sets of config overrides; ``default_preset`` is used when none is named."""
    default_preset: ClassVar[str | None] = None

    spec: MLPSpec
    return_convention: str = "standard"
    normalize_obs: bool = True
    """Whether the engine normalises observations with its running statistics for this algorithm."""

    def __init__(self, config: Any, info: EnvInfo, seed: int):
        raise NotImplementedError

    def iterate(self, engine: RolloutEngine) -> dict:
        """One iteration: evaluate some policies with the engine, learn from them; returns metrics."""
        raise NotImplementedError

    def eval_policy(self) -> tuple[torch.Tensor, float | None]:
        """The policy to evaluate now ``theta (P,)``, and the command that made it (None if no command)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over every parameter. On a quiet 2-core machine the UDRLPG Hopper
    generator's ``step()`` takes 0.84 ms fused against 3.1 ms for the per-tensor loop (bench/adam_step.py)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def make_config(cls: type, preset: dict[str, Any] | None, overrides: dict[str, str] | None) -> Any:
    """Build ``cls`` from a preset and ``key=value`` overrides, each value parsed by the field's type."""
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, v in (preset or {}).items():  # presets, or a run's saved config.json: check what a file says
        if key not in known:
            raise PolicygenError(f"{cls.__name__} has no setting {key!r}; settings: {', '.join(known)}")
        values[key] = check_type(key, v, hints[key])
    for key, raw in (overrides or {}).items():
        if key not in known:
            raise PolicygenError(f"{cls.__name__} has no setting {key!r}; settings: {', '.join(known)}")
        values[key] = parse_value(key, raw, hints[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise PolicygenError(f"bad {cls.__name__} setting: {e}") from None


def check_type(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type (int, float, bool, str, tuple of int or float), or a clear error."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is tuple and isinstance(value, list | tuple):
        items = [check_type(key, v, args[0]) for v in value]
        return tuple(items)
    else:
        return value  # a type this check does not know: the config class validates it
    if not ok:
        raise PolicygenError(f"setting {key}={value!r} is not a {getattr(hint, '__name__', hint)}")
    return value


def parse_value(key: str, raw: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        non_none = [a for a in args if a is not type(None)]
        if raw.lower() in ("none", "null", ""):
            return None
        return parse_value(key, raw, non_none[0])
    try:
        if hint is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint in (int, float, str):
            return hint(float(raw)) if hint is int and "e" in raw.lower() else hint(raw)
        if origin is tuple or hint is tuple:
            item = args[0] if args else int
            return tuple(item(x) for x in raw.split(",") if x.strip())
    except ValueError as e:
        raise PolicygenError(f"setting {key}={raw!r}: {e}") from None
    raise PolicygenError(f"setting {key} of type {hint} cannot be set from the command line")


def config_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
