"""The loop every algorithm shares: iterate, evaluate, log, checkpoint, resume.

Resume is exact: checkpoints are taken at fixed iteration counts, and the engine's environments are
reseeded from (seed, iteration) at each checkpoint, so a run restarted from its last checkpoint replays
the same episodes an uninterrupted run sees. A stop (Ctrl-C or SIGTERM) lets the iteration under way finish
and checkpoints there, so nothing is lost; the resumed run reseeds at that iteration, so from there on its
episodes differ from an uninterrupted run's. A second signal stops at once (back to the last checkpoint).
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import policygen
from policygen.algorithms.base import Algorithm, RunConfig, make_config
from policygen.algorithms.loading import CORRUPT, open_run, restore
from policygen.algorithms.registry import get_algorithm
from policygen.envs.make import env_info
from policygen.errors import EnvFault, PolicygenError, Terminated, raise_terminated
from policygen.rollout.engine import RolloutEngine
from policygen.rollout.factory import make_engine
from policygen.runs.rundir import RunDir


def versions() -> dict:
    out = {"policygen": policygen.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__}
    # the installed distribution's version: the lean EnvPool package's __version__ would run its whole
    # import (~0.7 s, JAX included) at every run's end
    for mod in ("gymnasium", "mujoco", "envpool", "stable_baselines3", "sb3_contrib"):
        if mod in sys.modules:
            try:
                out[mod] = importlib.metadata.version(mod)
            except importlib.metadata.PackageNotFoundError:
                out[mod] = getattr(sys.modules[mod], "__version__", "?")
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _reseed(seed: int, iteration: int, stream: int = 0) -> int:
    """Env seed for (run seed, iteration); stream 1 is the evaluation environments'."""
    key = [seed, iteration] if stream == 0 else [seed, iteration, stream]  # stream 0 keeps older runs' seeds
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2**31 - 1))


def build(algo_name: str, run_cfg: RunConfig, preset: str | None, overrides: dict[str, str] | None):
    """The algorithm and its config for a new run."""
    cls = get_algorithm(algo_name)
    preset = preset or cls.default_preset
    if preset is None and hasattr(cls, "preset_for"):
        preset = cls.preset_for(run_cfg.env_id)  # per-environment defaults are plain data
    if preset is not None and preset not in cls.presets:
        raise PolicygenError(f"{algo_name} has no preset {preset!r}; presets: {', '.join(cls.presets) or 'none'}")
    cfg = make_config(cls.Config, cls.presets.get(preset) if preset else None, overrides)
    info = env_info(run_cfg.env_id, run_cfg.env_kwargs)
    return cls(cfg, info, run_cfg.seed), cfg, preset


def start_run(algo_name: str, run_cfg: RunConfig, out: str, preset: str | None = None,
              overrides: dict[str, str] | None = None, force: bool = False, progress: bool | None = None,
              quiet: bool = False) -> RunDir:
    algo, cfg, preset = build(algo_name, run_cfg, preset, overrides)
    if getattr(algo, "step_based", False):
        algo.check_run(run_cfg)  # before the run directory exists: a bad setting leaves nothing behind
    config = {"algorithm": algo_name, "preset": preset, "run": asdict(run_cfg), "algo": asdict(cfg),
              "policy": algo.spec.to_dict() if algo.spec is not None else None,
              "return_convention": algo.return_convention,
              "versions": versions(), "commit": git_commit()}
    fresh = not (Path(out).exists() and any(Path(out).iterdir()))
    run = RunDir.create(out, config, force=force)
    try:
        return _train(run, algo, run_cfg, None, progress, quiet)
    except PolicygenError as e:
        # refused before any progress (e.g. the environments could not be built): leave nothing behind;
        # an EnvFault (too many failed episodes) keeps its run directory, resumable
        if fresh and not isinstance(e, EnvFault) and not run.has_checkpoint() and _metric_rows(run) == 0:
            run.unlock()
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    finally:
        run.unlock()


def _metric_rows(run: RunDir) -> int:
    path = run.path / "metrics.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def resume_run(path: str, progress: bool | None = None, quiet: bool = False) -> RunDir:
    run, run_cfg, algo = open_run(path, lock=True)
    try:
        if run.status == "complete":
            raise PolicygenError(f"{path} is already complete (summary.json written); nothing to resume")
        state = run.load_checkpoint() if run.has_checkpoint() else None
        if state is not None:
            run.check_resumable(state)
        return _train(run, algo, run_cfg, state, progress, quiet)
    finally:
        run.unlock()


@dataclass
class _Loop:
    """The trainer's own counters; checkpointed with the algorithm so a resumed run continues exactly."""

    iteration: int = 0
    wall_s: float = 0.0
    best_eval: float = -math.inf
    next_eval: int = 0
    failures: int = 0
    metric_rows: int = 0
    last_eval: dict | None = None
    recent_evals: list = field(default_factory=list)
    """Returns of the last ``LAST_EVALS`` evaluations (the paper's "last returns" average)."""
    best_train: float = -math.inf
    """Best training-episode return so far (step-based baselines; the others keep their own)."""


LAST_EVALS = 20


def _train(run: RunDir, algo: Algorithm, rc: RunConfig, state: dict | None, progress: bool | None,
           quiet: bool) -> RunDir:
    if getattr(algo, "step_based", False):
        from policygen.algorithms.steploop import train_steps

        start = int(state["env_steps"]) if isinstance(state, dict) and "env_steps" in state else 0
        bar = _progress(rc.steps, start, progress, quiet)
        try:
            loop, env_steps = train_steps(run, algo, rc, state, bar)
        finally:
            bar.close()
        return _finish(run, algo, rc, loop, env_steps)
    if rc.torch_threads > 0:
        torch.set_num_threads(rc.torch_threads)
    engine = _engine(rc, algo, rc.num_envs)
    # evaluation has its own environments, reseeded per evaluation: how often a run evaluates must not
    # change what it trains on (shared slots would hand training episodes other initial states)
    eval_engine = _engine(rc, algo, max(1, min(rc.eval_episodes, 16)))
    eval_engine.obs_stats = engine.obs_stats  # the same object: evaluations use the current statistics
    loop = _Loop(next_eval=rc.eval_every)
    if state is not None:
        engine.obs_stats, engine.env_steps = restore(str(run.path), algo, state)
        eval_engine.obs_stats = engine.obs_stats
        try:
            loop = _Loop(**state["loop"])
        except CORRUPT as e:
            raise PolicygenError(f"{run.path}: checkpoint's trainer state is damaged ({e})") from None
    failures_before = loop.failures  # the engines count this process's failures
    run.write_metrics(run.read_metrics()[: loop.metric_rows])  # drop rows logged after the checkpoint
    engine.reseed(_reseed(rc.seed, loop.iteration))
    run.set_status("running")
    t0 = time.perf_counter() - loop.wall_s
    tb = _tensorboard(run, rc, engine.env_steps if state is not None else None)
    bar = _progress(rc.steps, engine.env_steps, progress, quiet)
    stop = _StopRequest()
    try:
        stop.install()
        while engine.env_steps < rc.steps:
            before = engine.env_steps
            m = algo.iterate(engine)
            loop.iteration += 1
            row = {"env_steps": engine.env_steps, "iteration": loop.iteration, **m}
            if engine.env_steps >= loop.next_eval or engine.env_steps >= rc.steps:
                eval_engine.reseed(_reseed(rc.seed, loop.iteration, stream=1))
                ev = evaluate_algo(algo, eval_engine, rc.eval_episodes)
                if math.isfinite(ev["eval_return"]):  # every evaluation episode failed: nothing to record
                    loop.last_eval = ev
                    loop.best_eval = max(loop.best_eval, ev["eval_return"])
                    loop.recent_evals = [*loop.recent_evals, ev["eval_return"]][-LAST_EVALS:]
                row.update(ev)
                while loop.next_eval <= engine.env_steps:
                    loop.next_eval += rc.eval_every
            loop.failures = failures_before + engine.failures + eval_engine.failures
            row["failures"] = loop.failures
            if loop.failures > rc.max_failures:
                run.set_status("stopped", reason="failures")
                raise EnvFault(f"{loop.failures} episodes failed, over max_failures={rc.max_failures}; the last: "
                               f"{engine.last_fault or eval_engine.last_fault}. Nothing was stored from them; "
                               f"the run stopped and resumes from its last checkpoint with --resume {run.path}")
            row["wall_s"] = loop.wall_s = time.perf_counter() - t0
            run.append_metrics(row)
            if tb is not None:
                tb.write(row)
            loop.metric_rows += 1
            bar.update(engine.env_steps, row)
            if _snapshot_due(rc, before, engine.env_steps):
                run.save_snapshot(_state(algo, engine, loop), engine.env_steps)
            stopping = stop.signum is not None and engine.env_steps < rc.steps
            if loop.iteration % rc.checkpoint_every == 0 and engine.env_steps < rc.steps:
                engine.reseed(_reseed(rc.seed, loop.iteration))
                _checkpoint(run, algo, engine, loop)
            elif stopping:
                _checkpoint(run, algo, engine, loop)  # the resume reseeds at this iteration
            if stopping:
                bar.close()
                stop.stop(run, f"iteration {loop.iteration} ({engine.env_steps} env steps)")
    finally:
        stop.uninstall()
        bar.close()
        if tb is not None:
            tb.close()
        engine.close()
        eval_engine.close()
    loop.wall_s = time.perf_counter() - t0
    _checkpoint(run, algo, engine, loop)
    return _finish(run, algo, rc, loop, engine.env_steps)


class _StopRequest:
    """Ctrl-C or SIGTERM while training: the iteration under way finishes, the trainer checkpoints and stops.
    A second signal stops at once. Handlers only from the main thread and only over Python's defaults (or the
    CLI's SIGTERM handler), restored afterwards."""

    OURS = {signal.SIGINT: (signal.default_int_handler,), signal.SIGTERM: (signal.SIG_DFL, raise_terminated)}

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, defaults in self.OURS.items():
            if signal.getsignal(sig) in defaults:
                self.previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def stop(self, run: RunDir, where: str) -> None:
        """Mark ``run`` stopped and raise the stop the first signal asked for (``Terminated`` for SIGTERM), after
        saying that its checkpoint is at ``where`` and how to continue."""
        run.set_status("stopped", reason="SIGTERM" if self.signum == signal.SIGTERM else "interrupted")
        print(f"policygen: checkpoint saved at {where}; continue with: policygen train --resume {run.path}",
              file=sys.stderr)
        raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.signum = signum
        print("\npolicygen: stopping after this iteration, with a checkpoint (a second Ctrl-C or SIGTERM stops at "
              "once, back to the last checkpoint)", file=sys.stderr)


def _finish(run: RunDir, algo: Algorithm, rc: RunConfig, loop: _Loop, env_steps: int) -> RunDir:
    """Write summary.json (the keys DESIGN.md promises), which marks the run complete."""
    cfg, ev = run.config, loop.last_eval or {}
    run.write_summary({
        "algorithm": cfg["algorithm"], "preset": cfg.get("preset"), "env_id": rc.env_id, "seed": rc.seed,
        "env_steps": env_steps, "iterations": loop.iteration, "wall_s": loop.wall_s,
        "final_eval_return": ev.get("eval_return"), "final_eval_return_std": ev.get("eval_return_std"),
        "final_eval_command": ev.get("eval_command"),
        "best_eval_return": loop.best_eval if ev else None, "failures": loop.failures,
        "last20_eval_mean": float(np.mean(loop.recent_evals)) if loop.recent_evals else None,
        "last20_eval_count": len(loop.recent_evals),
        "return_convention": algo.return_convention, "versions": versions(), "commit": git_commit(),
    })
    return run


def _tensorboard(run: RunDir, rc: RunConfig, resumed_at: int | None):
    if not getattr(rc, "tensorboard", False):
        return None
    from policygen.runs.tblog import TensorBoardLog

    # rows after the checkpoint were cut from metrics.csv; purge their events too
    return TensorBoardLog(run.path / "tensorboard", purge_step=None if resumed_at is None else resumed_at + 1)


def _engine(rc: RunConfig, algo: Algorithm, num_envs: int):
    """The run's engine: local, or over Ray for backend ray (same interface; both engines share its actors).
    Training engines tolerate faulty environments: a spoiled episode is marked failed and counted."""
    return make_engine(rc.env_id, algo.spec, num_envs=num_envs, backend=rc.backend, seed=rc.seed,
                       ray_address=rc.ray_address, ray_workers=rc.ray_workers,
                       return_convention=algo.return_convention, env_kwargs=rc.env_kwargs,
                       normalize_obs=getattr(algo, "normalize_obs", True), tolerate_faults=True,
                       step_timeout=rc.step_timeout, num_threads=rc.env_threads or None)


def evaluate_algo(algo: Algorithm, engine: RolloutEngine, episodes: int) -> dict:
    theta, command = algo.eval_policy()
    res = engine.evaluate(theta.unsqueeze(0), episodes=1 if episodes < 1 else episodes, count_steps=False)
    rets = res.episode_returns[np.isfinite(res.episode_returns)]  # failed episodes are NaN
    if not len(rets):
        return {"eval_return": math.nan, "eval_return_std": math.nan, "eval_command": command}
    return {"eval_return": float(np.mean(rets)), "eval_return_std": float(np.std(rets)),
            "eval_command": command}


def _state(algo: Algorithm, engine: RolloutEngine, loop: _Loop) -> dict:
    return {"algo": algo.state_dict(), "obs_stats": engine.obs_stats.state_dict(), "env_steps": engine.env_steps,
            "loop": asdict(loop)}


def _checkpoint(run: RunDir, algo: Algorithm, engine: RolloutEngine, loop: _Loop) -> None:
    run.save_checkpoint(_state(algo, engine, loop))


def _snapshot_due(rc: RunConfig, before: int, after: int) -> bool:
    """Whether this iteration crossed one of the ``snapshots`` marks ``steps * i / (snapshots + 1)``."""
    k = getattr(rc, "snapshots", 0)
    if k <= 0 or after >= rc.steps:  # the end of the run is the latest checkpoint
        return False
    marks = [rc.steps * i // (k + 1) for i in range(1, k + 1)]
    return any(before < mark <= after for mark in marks)


class _progress:
    """A tqdm bar on a terminal, a plain line per ~5% when not (logs, CI), nothing when quiet."""

    def __init__(self, total: int, start: int, enabled: bool | None, quiet: bool):
        self.total, self.quiet = total, quiet
        tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.next_line = start + total // 20
        if tty and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, dynamic_ncols=True)
        self.pos = start

    def update(self, steps: int, row: dict) -> None:
        if self.quiet:
            return
        ev = row.get("eval_return")
        msg = f"ret {row.get('train_return_mean', float('nan')):.1f}" + (f" eval {ev:.1f}" if ev is not None else "")
        if self.bar is not None:
            self.bar.update(steps - self.pos)
            self.bar.set_postfix_str(msg, refresh=False)
        elif steps >= self.next_line or ev is not None:
            print(f"[policygen] {steps}/{self.total} env steps, {msg}", file=sys.stderr, flush=True)
            self.next_line = steps + self.total // 20
        self.pos = steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
