"""What every algorithm provides, the run settings they share, and config overrides from the CLI."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from policygen.envs.make import EnvInfo
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.rollout.engine import RolloutEngine


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
    torch_threads: int = 1
    """Threads of torch's own pool for the learning updates (0: torch's default). One, because the other
    core steps the physics: on this 2-core machine two torch threads made GoGePo's generator step 1.4-12x
    slower (12x when another job shared the cores; bench/results/gogepo-cost.md)."""


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


def make_config(cls: type, preset: dict[str, Any] | None, overrides: dict[str, str] | None) -> Any:
    """Build ``cls`` from a preset and ``key=value`` overrides, each value parsed by the field's type."""
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = dict(preset or {})
    hints = typing.get_type_hints(cls)
    for key, raw in (overrides or {}).items():
        if key not in known:
            raise PolicygenError(f"{cls.__name__} has no setting {key!r}; settings: {', '.join(known)}")
        values[key] = parse_value(key, raw, hints[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise PolicygenError(f"bad {cls.__name__} setting: {e}") from None


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
