#!/usr/bin/env python
"""Learning runs of one algorithm over seeds, and what the issues ask of them: the first evaluation that
reaches a threshold (env steps and wall seconds), the final and best evaluation, the total wall time.

Runs go one after the other (never two at once) through the CLI, into ``--root/ALGO-ENV-sSEED``; a finished
run (summary.json present) is not rerun, an interrupted one is resumed. Writes ``--out`` (JSON and a
Markdown table) with the date, machine, commit and the exact commands.

Usage (issue 3's InvertedPendulum figure):
    python bench/learning.py --algo gogepo --env InvertedPendulum-v5 --seeds 0,1,2 --steps 100000 \
        --eval-every 5000 --threshold 1000 --out bench/results/gogepo-ip
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = [sys.executable, "-m", "policygen.cli"]
"""The policygen of the Python running this script (a git worktree without its own .venv sets PYTHONPATH)."""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{cpu}, {os.cpu_count()} cores"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def summarise(run: Path, threshold: float | None) -> dict:
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["eval_return"]]
    evals = [(int(r["env_steps"]), float(r["wall_s"]), float(r["eval_return"])) for r in rows]
    summary = json.loads((run / "summary.json").read_text())
    started_at = json.loads((run / "config.json").read_text()).get("commit") or summary.get("commit") or "?"
    first = next(((s, w) for s, w, e in evals if threshold is not None and e >= threshold), None)
    after = [e for s, _, e in evals if first and s >= first[0]]
    return {"run": str(run), "seed": summary["seed"], "commit": started_at, "env_steps": summary["env_steps"],
            "wall_s": summary["wall_s"], "final_eval": summary["final_eval_return"],
            "best_eval": max(e for _, _, e in evals) if evals else None,
            "last20_eval_mean": summary.get("last20_eval_mean"), "last20_eval_count": summary.get("last20_eval_count"),
            "first_at_threshold": None if first is None else {"env_steps": first[0], "wall_s": first[1]},
            "evals_at_threshold_after_first": None if first is None else
            f"{sum(e >= threshold for e in after)}/{len(after)}"}


def last20(r: dict) -> str:
    return "-" if r["last20_eval_mean"] is None else f"{r['last20_eval_mean']:.1f} ({r['last20_eval_count']})"


def calibration(r: dict) -> str:
    c = r.get("calibration")
    if not c or c["spearman"] is None:
        return "-"
    return f"{c['spearman']:.2f} / {100 * c['mae_frac']:.1f}%"  # one decimal: the target is <= 10%


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--threshold", type=float)
    p.add_argument("--preset")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE passed to policygen train")
    p.add_argument("--sweep", action="store_true",
                   help="after each run: 21 commands over the seen range, 5 episodes each (calibration)")
    p.add_argument("--train-args", default="", help="more flags for policygen train, e.g. "
                   "'--backend ray --ray-address HEAD:6379 --num-envs 512' (docs/ray.md)")
    p.add_argument("--root", default="runs/bench", help="where the run directories go")
    p.add_argument("--out", required=True, help="results path without extension (.json and .md written)")
    a = p.parse_args()
    a.out = a.out.removesuffix(".md").removesuffix(".json")  # a path given with either extension means the pair
    results, commands = [], []
    for seed in [int(s) for s in a.seeds.split(",")]:
        run = Path(a.root) / f"{a.algo}{'-' + a.preset if a.preset else ''}-{a.env}-s{seed}"
        cmd = [*PG, "train", a.algo, "--env", a.env, "--steps", str(a.steps), "--seed", str(seed),
               "--eval-every", str(a.eval_every), "--eval-episodes", str(a.eval_episodes), "--out", str(run),
               "--quiet"] + (["--preset", a.preset] if a.preset else []) + [x for kv in a.set for x in ("--set", kv)]
        cmd += shlex.split(a.train_args)
        commands.append(shlex.join(cmd[len(PG):]).replace(str(ROOT) + "/", ""))
        if not (run / "summary.json").exists():
            resume = [*PG, "train", "--resume", str(run), "--quiet"] if (run / "config.json").exists() else cmd
            print("+", shlex.join(resume), file=sys.stderr, flush=True)
            subprocess.run(resume, check=True)
        results.append(summarise(run, a.threshold))
        if a.sweep:
            out = subprocess.run([*PG, "sweep", str(run), "--episodes", "5"], capture_output=True, text=True,
                                 check=True)
            sw = json.loads(out.stdout)
            results[-1]["calibration"] = {"spearman": sw["spearman"], "mae_frac": sw["mae_frac"],
                                          "seen_range": sw["seen_range"], "plot": sw["plot"]}
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    # the commit each run started at (its config.json), not the tree's at the end: a run from a work tree that
    # moves while it trains is the code it started with (a resumed run keeps its first commit too)
    started = sorted({r["commit"] for r in results})
    meta = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
            "commit": started[0] if len(started) == 1 else ", ".join(started), "commit_at_end": commit(),
            "load_average_at_end": os.getloadavg(), "algo": a.algo, "env": a.env,
            "preset": a.preset, "threshold": a.threshold, "commands": ["policygen " + c for c in commands]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({**meta, "runs": results}, indent=2))
    lines = [f"# {a.algo}{' ' + a.preset if a.preset else ''} on {a.env}", "",
             f"{meta['date']}, {meta['machine']}, commit {', '.join(c[:10] for c in started)} (at each run's "
             f"start), load at end "
             f"{meta['load_average_at_end'][0]:.1f}. Re-run: `python bench/learning.py "
             f"{shlex.join(sys.argv[1:])}`", "",
             f"| seed | first eval >= {a.threshold} (env steps / wall) | evals >= threshold after it | final eval "
             "| last-20 eval mean (n) | best eval | env steps | wall | calibration: Spearman / MAE % of range |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        f = r["first_at_threshold"]
        first = "never" if f is None else "{:,} / {:.0f} s".format(f["env_steps"], f["wall_s"])
        lines.append(f"| {r['seed']} | {first} | "
                     f"{r['evals_at_threshold_after_first'] or '-'} | {r['final_eval']:.1f} | {last20(r)} | "
                     f"{r['best_eval']:.1f} | {r['env_steps']:,} | {r['wall_s']:.0f} s | {calibration(r)} |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
