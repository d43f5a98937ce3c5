"""The runs a report reads: found under the given folders, checked, grouped by environment.

A run is used when its config.json names an algorithm and env, its summary.json holds a finite
``final_eval_return`` (the run is complete) and its metrics.csv has the shared columns with at least one
evaluation row of finite numbers. Anything else is skipped with one line saying why; the report is built
from the rest.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policygen.analysis.runs_list import _read_json, find_runs
from policygen.errors import PolicygenError

NEEDED = ("env_steps", "wall_s", "eval_return")


@dataclass
class RunData:
    path: Path
    algo: str
    env: str
    """The table it belongs to: the env id, plus its env_kwargs when the run set any."""
    seed: int
    final: float
    """summary.json's final_eval_return (standard Gymnasium return)."""
    wall_total: float
    env_steps: int
    steps: np.ndarray
    """Env steps of each evaluation row."""
    wall: np.ndarray
    evals: np.ndarray
    commit: str | None
    sweep: dict | None = field(default=None)


class Skip(Exception):
    """A run the report cannot use; the message is its one line."""


def _finite(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Skip(f"{what} is {v!r}, not a finite number")
    return float(v)


def _metrics(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = path / "metrics.csv"
    try:
        with open(p, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
            if missing:
                raise Skip(f"metrics.csv lacks the column(s) {', '.join(missing)} (header {reader.fieldnames})")
            rows = [r for r in reader if r.get("eval_return")]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Skip(f"metrics.csv unreadable ({e})") from None
    if not rows:
        raise Skip("metrics.csv has no evaluation rows")
    try:
        a = np.array([[float(r[c]) for c in NEEDED] for r in rows])
    except (TypeError, ValueError) as e:
        raise Skip(f"metrics.csv holds a value that is not a number ({e})") from None
    if not np.isfinite(a).all() or (np.diff(a[:, 0]) < 0).any():
        raise Skip("metrics.csv holds non-finite values or env_steps that go backwards")
    return a[:, 0], a[:, 1], a[:, 2]


def load_run_data(path: Path) -> RunData:
    cfg = _read_json(path / "config.json")
    run = cfg.get("run") if isinstance(cfg.get("run"), dict) else {}
    if not isinstance(cfg.get("algorithm"), str) or not isinstance(run.get("env_id"), str):
        raise Skip("config.json names no algorithm or env (not a training run, or damaged)")
    summary = _read_json(path / "summary.json")
    if not summary:
        raise Skip("not complete (no summary.json): resume it or wait for it")
    final = _finite(summary.get("final_eval_return"), "summary.json's final_eval_return")
    steps, wall, evals = _metrics(path)
    env = run["env_id"] + (f" {json.dumps(run['env_kwargs'], sort_keys=True)}" if run.get("env_kwargs") else "")
    sweep = _read_json(path / "sweep.json") or None
    if sweep is not None and not all(isinstance(sweep.get(k), list) for k in ("commands", "achieved_mean")):
        sweep = None
    return RunData(path, cfg["algorithm"], env, int(run.get("seed", 0)), final,
                   _finite(summary.get("wall_s", wall[-1]), "summary.json's wall_s"),
                   int(summary.get("env_steps", steps[-1])), steps, wall, evals, summary.get("commit"), sweep)


def collect(paths: list[str], env: str | None = None) -> tuple[list[RunData], list[str], list[str]]:
    """(runs used, one line per run skipped, notes) from run directories and folders of runs."""
    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise PolicygenError(f"{path}: no such run directory or folder")
        runs = [path] if (path / "config.json").exists() else find_runs(path, max_depth=4)
        if not runs:
            raise PolicygenError(f"{path}: no policygen run directories in it")
        found += runs
    used, skipped = [], []
    for path in dict.fromkeys(found):
        try:
            run = load_run_data(path)
        except Skip as e:
            skipped.append(f"{path}: {e}")
            continue
        if env is not None and run.env.split(" ")[0] != env:
            skipped.append(f"{path}: a run of {run.env}, not of --env {env}")
            continue
        used.append(run)
    notes = []
    envs = sorted({r.env for r in used})
    if len(envs) > 1:
        notes.append(f"runs of {len(envs)} environments given ({', '.join(envs)}): one table per environment, "
                     f"never one across them (their returns are on different scales)")
    if not used:
        raise PolicygenError("no usable run among the inputs; skipped: " + "; ".join(skipped))
    return used, skipped, notes


def by_env(runs: list[RunData]) -> dict[str, dict[str, list[RunData]]]:
    """{env: {algorithm: runs sorted by seed}}, environments and algorithms in a stable order."""
    out: dict[str, dict[str, list[RunData]]] = {}
    for r in sorted(runs, key=lambda r: (r.env, r.algo, r.seed)):
        out.setdefault(r.env, {}).setdefault(r.algo, []).append(r)
    return out
