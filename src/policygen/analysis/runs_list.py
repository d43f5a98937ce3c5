"""``policygen runs``: the run directories under a folder, with status, env, algorithm and evaluations.

A run is ``complete`` (summary.json written), ``running`` (status running and its lock held by a live
process), ``stopped`` (status running but nobody holds the lock: killed, resumable with ``--resume``), or
``broken`` (config.json unreadable). Evaluations come from summary.json when complete, else metrics.csv.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
from pathlib import Path

from policygen.errors import PolicygenError
from policygen.runs.rundir import RUN_FORMAT

COLUMNS = ("run", "status", "algorithm", "env_id", "env_steps", "best_eval", "last_eval", "wall_s")


def find_runs(root: str | Path, max_depth: int = 3) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a policygen config.json, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise PolicygenError(f"{root}: no such folder (policygen runs ROOT lists the run directories under ROOT)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if "config.json" in filenames and _is_run(Path(dirpath) / "config.json"):
            found.append(Path(dirpath))
            dirnames[:] = []  # a run's checkpoints/ holds no runs
        elif depth >= max_depth:
            dirnames[:] = []
        dirnames.sort()
    return sorted(found)


def _is_run(config: Path) -> bool:
    try:
        return json.loads(config.read_text()).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _locked(path: Path) -> bool:
    """Whether a live process holds the run's lock (the trainer holds it for the whole run)."""
    lock = path / ".lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def _read_json(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _from_metrics(path: Path) -> dict:
    """Best and last evaluation, env steps and wall time from metrics.csv (a torn last line is skipped)."""
    out = {"best_eval": None, "last_eval": None, "env_steps": None, "wall_s": None}
    try:
        with open(path / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return out
    evals = []
    for r in rows:
        try:
            out["env_steps"], out["wall_s"] = int(r["env_steps"]), float(r["wall_s"])
            if r.get("eval_return"):
                evals.append(float(r["eval_return"]))
        except (KeyError, TypeError, ValueError):
            continue
    if evals:
        out["best_eval"], out["last_eval"] = max(evals), evals[-1]
    return out


def describe_run(path: Path) -> dict:
    cfg = _read_json(path / "config.json")
    status = _read_json(path / "status.json").get("status", "unknown")
    row = {"run": str(path), "status": status, "algorithm": cfg.get("algorithm"),
           "env_id": (cfg.get("run") or {}).get("env_id"), "steps": (cfg.get("run") or {}).get("steps"),
           **_from_metrics(path)}
    summary = _read_json(path / "summary.json")
    if summary:
        row.update(status="complete", env_steps=summary.get("env_steps"), wall_s=summary.get("wall_s"),
                   last_eval=summary.get("final_eval_return"), best_eval=summary.get("best_eval_return"))
    elif status == "running" and not _locked(path):
        row["status"] = "stopped"
    return row


def list_runs(root: str | Path) -> list[dict]:
    return [describe_run(p) for p in find_runs(root)]


def runs_table(rows: list[dict]) -> str:
    """A plain fixed-width table, one run per line."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    cells = [list(COLUMNS)] + [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    numeric = {"env_steps", "best_eval", "last_eval", "wall_s"}
    lines = ["  ".join(v.rjust(w) if COLUMNS[i] in numeric else v.ljust(w) for i, (v, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]
    return "\n".join(lines)
