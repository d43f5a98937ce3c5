"""Benchmark suites: declared grids of (algorithm, env, seed, budget) run as a resumable queue.

A suite is plain data: groups of algorithms x envs x seeds sharing a budget and evaluation settings.
``policygen bench suite NAME --out DIR`` runs every cell as ``python -m policygen train ...`` in
``DIR/runs/ENV-ALGO-sSEED`` with ``--jobs`` subprocesses at once. A cell whose summary.json is complete is
never rerun; a cell with a config.json but no summary (killed) continues with ``--resume``; a folder without
a config.json (killed before it was written) is started again. So a killed suite continues where it was.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from policygen.analysis.runs_list import _locked, _read_json
from policygen.errors import PolicygenError
from policygen.runs.files import atomic_write_json, read_json

GENERATORS = ["gogepo", "udrlpg"]
PARAM_SPACE = ["gogepo", "udrlpg", "ars", "ars-sb3"]
STEP_BASED = ["td3", "sac", "ddpg", "udrl"]
ALL = PARAM_SPACE + STEP_BASED
SMALL_NETS = {"td3": ["hidden=64,64"], "sac": ["hidden=64,64"], "ddpg": ["hidden=64,64"], "udrl": ["hidden=32,32"],
              "gogepo": ["hidden=16,16", "evaluator_hidden=32,32", "generator_hidden=32,32", "n_probe=20"],
              "udrlpg": ["policy_hidden=16,16", "generator_hidden=32,32", "update_repeats=8"]}

SUITES: dict[str, dict] = {
    "smoke": {
        "description": "every algorithm, 2 seeds, 2,000 steps of InvertedPendulum-v5, small networks: minutes (CI)",
        "groups": [{"algos": ALL, "envs": ["InvertedPendulum-v5"], "seeds": [0, 1], "steps": 2000,
                    "eval_every": 1000, "eval_episodes": 3, "set": SMALL_NETS}],
    },
    "paper-small": {
        "description": "every algorithm, 5 seeds, 100k steps of InvertedPendulum-v5 and MountainCarContinuous-v0",
        "groups": [{"algos": ALL, "envs": ["InvertedPendulum-v5", "MountainCarContinuous-v0"],
                    "seeds": [0, 1, 2, 3, 4], "steps": 100_000, "eval_every": 5000, "eval_episodes": 10}],
    },
    "paper-mujoco": {
        # The step-based budget: TD3/SAC/DDPG make one gradient step per env step; on this shared 2-core
        # machine that was 12-33 steps/s (bench/results/paper-small-partial/), so 300k steps is ~2.5-7 h a run.
        # UDRL steps are cheaper (no gradient step per env step): 1M. The parameter-space methods get 3M.
        "description": "Swimmer-v5 and Hopper-v5, 3 seeds: 3M steps for gogepo/udrlpg/ars/ars-sb3, "
                       "300k for td3/sac/ddpg, 1M for udrl",
        "groups": [
            {"algos": PARAM_SPACE, "envs": ["Swimmer-v5", "Hopper-v5"], "seeds": [0, 1, 2], "steps": 3_000_000,
             "eval_every": 50_000, "eval_episodes": 10},
            {"algos": ["td3", "sac", "ddpg"], "envs": ["Swimmer-v5", "Hopper-v5"], "seeds": [0, 1, 2],
             "steps": 300_000, "eval_every": 10_000, "eval_episodes": 10},
            {"algos": ["udrl"], "envs": ["Swimmer-v5", "Hopper-v5"], "seeds": [0, 1, 2], "steps": 1_000_000,
             "eval_every": 25_000, "eval_episodes": 10},
        ],
    },
}
GROUP_KEYS = {"algos", "envs", "seeds", "steps", "eval_every", "eval_episodes", "set"}


@dataclass(frozen=True)
class Cell:
    algo: str
    env: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int
    sets: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.env.replace('/', '_')}-{self.algo}-s{self.seed}"

    def argv(self, out: Path, env_threads: int = 0) -> list[str]:
        sets = [x for s in self.sets for x in ("--set", s)]
        threads = ["--env-threads", str(env_threads)] if env_threads > 0 else []
        return ["train", self.algo, "--env", self.env, "--steps", str(self.steps), "--seed", str(self.seed),
                "--eval-every", str(self.eval_every), "--eval-episodes", str(self.eval_episodes),
                "--out", str(out), "--quiet", *threads, *sets]


def load_suite(name: str) -> dict:
    """A built-in suite, or a JSON file of the same shape."""
    if name in SUITES:
        return SUITES[name]
    if name.endswith(".json"):
        suite = read_json(name, "suite")
        if not isinstance(suite, dict) or not isinstance(suite.get("groups"), list):
            raise PolicygenError(f"{name}: a suite file needs {{\"groups\": [{{\"algos\": [...], \"envs\": [...], "
                                 f"\"seeds\": [...], \"steps\": N}}]}}")
        return suite
    raise PolicygenError(f"unknown suite {name!r}; suites: {', '.join(SUITES)} (or a suite .json file)")


def cells(suite: dict, algos: list[str] | None = None, envs: list[str] | None = None,
          seeds: list[int] | None = None) -> list[Cell]:
    """The suite's cells, optionally only some of its algorithms, envs or seeds (each must be in the grid)."""
    from policygen.algorithms.registry import ALGORITHMS

    out = []
    for g in suite["groups"]:
        bad = set(g) - GROUP_KEYS if isinstance(g, dict) else {"(not an object)"}
        if bad or not {"algos", "envs", "seeds", "steps"} <= set(g):
            raise PolicygenError(f"suite group {g!r}: needs algos, envs, seeds, steps (and may have eval_every, "
                                 f"eval_episodes, set); unknown keys: {sorted(bad)}")
        for a in g["algos"]:
            if a not in ALGORITHMS:
                raise PolicygenError(f"suite names algorithm {a!r}; algorithms: {', '.join(ALGORITHMS)}")
        sets, every = g.get("set", {}), int(g.get("eval_every", max(1000, g["steps"] // 20)))
        for a in g["algos"]:
            for e in g["envs"]:
                for s in g["seeds"]:
                    out.append(Cell(a, e, int(s), int(g["steps"]), every, int(g.get("eval_episodes", 10)),
                                    tuple(sets.get(a, ()))))
    for flag, chosen, have in (("--algos", algos, [c.algo for c in out]), ("--envs", envs, [c.env for c in out]),
                               ("--seeds", seeds, [c.seed for c in out])):
        missing = [x for x in chosen or [] if x not in have]
        if missing:
            valid = ", ".join(str(x) for x in dict.fromkeys(have))
            raise PolicygenError(f"{flag} {','.join(map(str, missing))}: not in this suite's grid; it has {valid}")
    return [c for c in out if (not algos or c.algo in algos) and (not envs or c.env in envs)
            and (seeds is None or c.seed in seeds)]


def cell_state(path: Path) -> str:
    """done (summary.json complete), running (locked by a live process), partial (resumable), new, pending."""
    if _read_json(path / "summary.json").get("final_eval_return", "missing") != "missing":
        return "done"
    if not path.exists():
        return "pending"
    if _locked(path):
        return "running"
    return "partial" if (path / "config.json").exists() else "new"


def suite_table(out: Path, todo: list[Cell]) -> str:
    lines = [f"{'cell':48s} {'steps':>9s}  {'state':8s} final_eval_return"]
    for c in todo:
        path = out / "runs" / c.name
        ret = _read_json(path / "summary.json").get("final_eval_return")
        lines.append(f"{c.name:48s} {c.steps:9d}  {cell_state(path):8s} {'-' if ret is None else f'{ret:.1f}'}")
    return "\n".join(lines)


def _die_with_parent() -> None:  # a SIGKILLed suite leaves no orphan training runs (Linux)
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _launch(cell: Cell, out: Path, env_threads: int) -> tuple[subprocess.Popen, str]:
    path = out / "runs" / cell.name
    state = cell_state(path)
    if state == "partial":  # its config.json keeps the threads it started with
        argv, how = ["train", "--resume", str(path), "--quiet"], "resumed"
    else:
        argv, how = [*cell.argv(path, env_threads), *(["--force"] if state == "new" else [])], "started"
    log = open(out / "logs" / f"{cell.name}.log", "ab")  # noqa: SIM115 (closed when the process ends)
    log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {how}: policygen {' '.join(argv)}\n".encode())
    log.flush()
    # its own session: a Ctrl-C reaches only the suite, which passes each cell one SIGTERM (_stop_cells)
    proc = subprocess.Popen([sys.executable, "-m", "policygen", *argv], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent, start_new_session=True)
    log.close()
    return proc, how


def run_suite(name: str, out: str, jobs: int = 2, todo: list[Cell] | None = None, echo=print,
              env_threads: int | None = None) -> dict:
    """Run the suite's unfinished cells, ``jobs`` at a time; returns what was done, skipped and failed.
    Each new cell gets ``env_threads`` EnvPool threads (None: the CPUs shared out over the jobs, at least 1),
    so ``jobs`` cells do not each take every core."""
    out_p = Path(out)
    if env_threads is None:
        env_threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    suite = load_suite(name)
    todo = cells(suite) if todo is None else todo
    meta = _read_json(out_p / "suite.json")
    if meta and meta.get("suite") != name:
        raise PolicygenError(f"{out_p} holds suite {meta.get('suite')!r}, not {name!r}; choose another --out")
    (out_p / "logs").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_p / "suite.json", {"suite": name, "description": suite.get("description"),
                                             "cells": [c.name for c in cells(suite)]})
    states = {c: cell_state(out_p / "runs" / c.name) for c in todo}
    queue = [c for c in todo if states[c] not in ("done", "running")]
    result = {"suite": name, "out": str(out_p), "cells": len(todo), "skipped_done": sum(s == "done" for s in
              states.values()), "running_elsewhere": [c.name for c, s in states.items() if s == "running"],
              "started": [], "resumed": [], "failed": []}
    live: dict[subprocess.Popen, Cell] = {}
    try:
        while queue or live:
            while queue and len(live) < jobs:
                cell = queue.pop(0)
                proc, how = _launch(cell, out_p, env_threads)
                live[proc] = cell
                result[how].append(cell.name)
                echo(f"[suite] {how} {cell.name}")
            time.sleep(0.2)
            for proc in [p for p in live if p.poll() is not None]:
                cell = live.pop(proc)
                ok = proc.returncode == 0 and cell_state(out_p / "runs" / cell.name) == "done"
                if not ok:
                    result["failed"].append({"cell": cell.name, "exit": proc.returncode,
                                             "error": _last_error(out_p, cell)})
                echo(f"[suite] {'finished' if ok else 'FAILED'} {cell.name}")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the CLI raises it for both)
        _stop_cells(live, echo)
        raise
    return result


def _stop_cells(live: dict[subprocess.Popen, Cell], echo) -> None:
    """Send each running cell one SIGTERM (it finishes its iteration, checkpoints and exits) and wait for them;
    a second Ctrl-C sends a second SIGTERM, which stops them at once."""
    running = [p for p in live if p.poll() is None]
    echo(f"[suite] stopping: {len(running)} running cell(s) finish their iteration and checkpoint "
         f"(Ctrl-C again: stop them now); the same command continues the suite")
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    try:
        for proc in running:
            proc.wait()
    except KeyboardInterrupt:
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        raise


def _last_error(out: Path, cell: Cell) -> str:
    try:
        lines = (out / "logs" / f"{cell.name}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("policygen: error:") or "Error" in line]
    return (errors or lines or [""])[-1][:300]


def parse_list(text: str | None, kind=str) -> list | None:
    if not text:
        return None
    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PolicygenError(f"expected a comma-separated list, got {text!r}") from None
