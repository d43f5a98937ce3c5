"""One place that builds the engine a run asked for: local (EnvPool / Gymnasium) or spread over Ray."""

from __future__ import annotations

from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.rollout.backends import ENGINE_BACKENDS
from policygen.rollout.engine import RolloutEngine


def make_engine(env_id: str, spec: MLPSpec, num_envs: int = 64, backend: str = "auto", seed: int = 0,
                ray_address: str | None = None, ray_workers: int | None = None, **kwargs):
    """A ``RolloutEngine``, or a ``RayRolloutEngine`` for ``backend="ray"`` (environments: auto inside)."""
    if backend not in ENGINE_BACKENDS:
        raise PolicygenError(f"backend {backend!r} is not one of {list(ENGINE_BACKENDS)}")
    if backend == "ray":
        from policygen.rollout.ray_engine import RayRolloutEngine

        return RayRolloutEngine(env_id, spec, num_envs=num_envs, seed=seed, address=ray_address,
                                workers=ray_workers or None, **kwargs)
    if ray_address or ray_workers:
        raise PolicygenError(f"--ray-address and --ray-workers need --backend ray, not {backend!r}")
    return RolloutEngine(env_id, spec, num_envs=num_envs, backend=backend, seed=seed, **kwargs)
