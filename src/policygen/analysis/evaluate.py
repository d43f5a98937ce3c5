"""Evaluate a policy (a run's, or a policy file's) on an environment: JSON-ready numbers."""

from __future__ import annotations

import numpy as np

from policygen.analysis.play import play
from policygen.envs.make import env_info
from policygen.envs.stats import RunningStats
from policygen.errors import PolicygenError
from policygen.policies.export import ExportedPolicy
from policygen.policies.standalone import Policy
from policygen.rollout.engine import RolloutEngine


def check_fits(policy: Policy | ExportedPolicy, env_id: str) -> None:
    info = env_info(env_id)
    if policy.spec.obs_dim != info.obs_dim or policy.spec.act_dim != info.act_dim:
        made_for = policy.meta.get("env_id", "another environment")
        raise PolicygenError(f"this policy takes observations of size {policy.spec.obs_dim} and gives actions of "
                             f"size {policy.spec.act_dim} (made for {made_for}); {env_id} has obs "
                             f"{info.obs_dim}, act {info.act_dim}")


def evaluate_policies(policies: list[Policy], env_id: str, episodes: int = 10, seed: int = 0,
                      backend: str = "auto") -> list[dict]:
    """Mean, std and every standard return of ``episodes`` episodes of each policy (same seed, same starts);
    for an env with a success signal (MetaWorld) also ``success_rate`` and each episode's ``successes``."""
    if episodes < 1:
        raise PolicygenError(f"--episodes must be at least 1, got {episodes}")
    out = []
    for p in policies:
        check_fits(p, env_id)
        engine = RolloutEngine(env_id, p.spec, num_envs=min(episodes, 64), backend=backend, seed=seed)
        engine.obs_stats = RunningStats.from_mean_std(p.obs_mean, p.obs_std)
        res = engine.evaluate(p.theta.unsqueeze(0), episodes=episodes, count_steps=False)
        engine.close()
        rets = res.episode_returns[0]
        row = {"env_id": env_id, "mean": float(np.mean(rets)), "std": float(np.std(rets)),
               "returns": [float(r) for r in rets], "episodes": episodes, "seed": seed,
               "backend": engine.backend_name}
        if res.successes is not None:
            row.update(success_rate=float(res.successes[0]), successes=[int(x) for x in res.episode_successes[0]])
        out.append(row)
    return out


def load_policy_file(path) -> Policy | ExportedPolicy:
    """Any policy file: ``.safetensors`` as a policygen ``Policy``, ``.pt``/``.onnx`` run by their own runtime."""
    from pathlib import Path

    from policygen.policies.export import EXPORT_SUFFIXES, load_exported
    from policygen.policies.io import POLICY_SUFFIXES, load_policy

    path = Path(path)
    if path.suffix == ".safetensors":
        return load_policy(path)
    if path.suffix in EXPORT_SUFFIXES:
        return load_exported(path)
    raise PolicygenError(f"{path}: unknown policy file extension {path.suffix!r}; use one of {list(POLICY_SUFFIXES)}")


def evaluate_exported(policy: ExportedPolicy, env_id: str, episodes: int = 10, seed: int = 0) -> dict:
    """Episodes of an exported file through its own runtime; episode i starts from ``reset(seed=seed + i)``."""
    check_fits(policy, env_id)
    kwargs = policy.meta.get("env_kwargs") if policy.meta.get("env_id") == env_id else None
    res = play(policy, env_id, episodes, seed, env_kwargs=kwargs)
    return {"env_id": env_id, "mean": float(np.mean(res.returns)), "std": float(np.std(res.returns)),
            "returns": res.returns, "lengths": res.lengths, "episodes": episodes, "seed": seed,
            "runtime": policy.runtime, "expected_return": policy.meta.get("expected_return")}
