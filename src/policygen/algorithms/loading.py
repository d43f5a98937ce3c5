"""Open a finished or stopped run: its algorithm restored from the last checkpoint, ready to act."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from policygen.algorithms.base import Algorithm, RunConfig, make_config
from policygen.algorithms.registry import get_algorithm
from policygen.envs.make import env_info
from policygen.envs.stats import RunningStats
from policygen.errors import PolicygenError
from policygen.policies.standalone import Policy
from policygen.runs.rundir import RunDir

_UNREAD = object()
"""``LoadedRun._command_map`` before the run's command map file is first looked for."""


@dataclass
class LoadedRun:
    run: RunDir
    algo: Algorithm
    run_config: RunConfig
    obs_stats: RunningStats
    env_steps: int
    _command_map: object = field(default=_UNREAD, repr=False)

    def generate(self, command: float, raw: bool = False) -> Policy:
        """A generator run's policy for the return ``command`` (in the run's return convention), through the
        run's command map if it has one (``policygen calibrate``) unless ``raw``."""
        return self.policy(command, raw)

    def generator_inputs(self, commands, raw: bool = False) -> tuple[np.ndarray, bool]:
        """What to give the generator for the returns ``commands``: the command map's inputs, or the commands
        themselves (``raw``, or no map fitted on this checkpoint); and whether the map was used."""
        from policygen.analysis.command_map import map_for

        c = np.asarray(commands, dtype=np.float64).reshape(-1)
        if getattr(self.algo, "generate", None) is None:
            raise PolicygenError(f"{self.run.config['algorithm']} is not a generator: it takes no command")
        if not raw:
            if self._command_map is _UNREAD:
                self._command_map = map_for(self.run.path, self.env_steps)
            if self._command_map is not None:
                return self._command_map.inputs_for(c), True
        return c, False

    def policy(self, command: float | None = None, raw: bool = False) -> Policy:
        """The run's policy (its evaluation policy, or the generator's output for ``command``)."""
        extra = {}
        if command is None:
            theta, command = self.algo.eval_policy()
        else:
            inputs, mapped = self.generator_inputs([float(command)], raw)
            theta = self.algo.generate(torch.as_tensor(inputs, dtype=torch.float32))[0]
            if mapped:
                extra["generator_input"] = float(inputs[0])
        meta = {"env_id": self.run_config.env_id, "algorithm": self.run.config["algorithm"],
                "command": command, **extra, "run": str(self.run.path), **self._expected(theta, command is None)}
        if self.run_config.env_kwargs:
            meta["env_kwargs"] = dict(self.run_config.env_kwargs)
        stats = self.obs_stats if getattr(self.algo, "normalize_obs", True) else None
        return Policy.from_stats(self.algo.spec, theta, stats, meta)

    def _expected(self, theta: torch.Tensor, eval_policy: bool) -> dict:
        """The return this policy is expected to earn, where the run knows one, and where it comes from."""
        predict = getattr(self.algo, "predict_returns", None)
        if predict is not None:
            value = float(predict(theta.unsqueeze(0))[0])
            return {"expected_return": value, "expected_return_source":
                    f"the evaluator's V(theta), {self.algo.return_convention} return convention"}
        if eval_policy and (self.run.path / "summary.json").exists():
            value = self.run.summary.get("final_eval_return")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return {"expected_return": float(value), "expected_return_source":
                        "the run's final evaluation (standard return)"}
        return {"expected_return": None}


CORRUPT = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError)
"""What reading a damaged config or state into objects can raise; each becomes one ``PolicygenError``."""


def open_run(path: str, lock: bool = False) -> tuple[RunDir, RunConfig, Algorithm]:
    """A run directory, its run settings and its algorithm built from config.json (not yet restored)."""
    run = RunDir.open(path, lock=lock)
    try:
        cfg = run.config
        if not isinstance(cfg, dict) or not isinstance(cfg.get("algorithm"), str) \
                or not isinstance(cfg.get("run"), dict) or not isinstance(cfg.get("algo"), dict):
            raise PolicygenError(f"{path}: config.json lacks the algorithm or run settings (not a training run)")
        cls = get_algorithm(cfg["algorithm"])
        try:
            rc = RunConfig(**cfg["run"])
            algo = cls(make_config(cls.Config, cfg["algo"], None), env_info(rc.env_id, rc.env_kwargs), rc.seed)
        except CORRUPT as e:
            raise PolicygenError(f"{path}: config.json is corrupt or from another version "
                                 f"({type(e).__name__}: {e})") from None
    except BaseException:
        run.unlock()
        raise
    return run, rc, algo


def restore(path: str, algo: Algorithm, state: dict) -> tuple[RunningStats, int]:
    """Load a checkpoint's state into ``algo``; its observation statistics and env steps."""
    try:
        algo.load_state_dict(state["algo"])
        stats = RunningStats(algo.spec.obs_dim)
        stats.load_state_dict(state["obs_stats"])
        if stats.mean.shape != (algo.spec.obs_dim,) or stats.m2.shape != (algo.spec.obs_dim,):
            raise ValueError(f"observation statistics of shape {stats.mean.shape}, the policy takes "
                             f"{algo.spec.obs_dim}")
        return stats, int(state["env_steps"])
    except CORRUPT as e:
        raise PolicygenError(f"{path}: checkpoint does not match its config, or is damaged "
                             f"({type(e).__name__}: {str(e)[:200]})") from None


def load_run(path: str, snapshot: str | None = None) -> LoadedRun:
    """The run restored from its latest checkpoint, or from the snapshot file ``snapshot`` in checkpoints/."""
    run, rc, algo = open_run(path)
    if getattr(algo, "step_based", False):
        raise PolicygenError(f"{path}: a {run.config['algorithm']} run (a step-based baseline, no policy vector); "
                             f"generate/evaluate/sweep/map/render take ars, gogepo and udrlpg runs; its "
                             f"evaluations are in metrics.csv and summary.json")
    if not run.has_checkpoint():
        raise PolicygenError(f"{path}: no checkpoint yet (checkpoints/latest.safetensors is missing)")
    if snapshot is not None and snapshot not in run.snapshots():
        kept = ", ".join(run.snapshots()) or "none (train --snapshots N keeps some)"
        raise PolicygenError(f"{path}: no snapshot {snapshot!r}; this run keeps: {kept}")
    stats, env_steps = restore(path, algo, run.load_checkpoint(snapshot))
    return LoadedRun(run, algo, rc, stats, env_steps)
