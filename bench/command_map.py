"""Does a command map (``policygen calibrate``) make a trained generator follow the command?

    python bench/command_map.py RUN_DIR [RUN_DIR ...] [--episodes 10] [--refine 3] [--out PREFIX]

For each run: fits the map as ``policygen calibrate RUN --episodes E --refine R`` does (21 commands over the
returns seen in training, seed 1; writes RUN/command_map.json), then sweeps the issue's 21 commands with 5
episodes of seed 2 (episodes the map never saw), once through the map and once with the generator alone
(``policygen sweep RUN --seed 2`` and ``--raw``). Prints one JSON line per run; with --out also PREFIX.json / .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.loading import load_run
from policygen.analysis.command_map import calibrate
from policygen.analysis.sweep import seen_range, sweep


def one(run_dir: str, episodes: int, refine: int) -> dict:
    loaded = load_run(run_dir)
    fit = calibrate(loaded, points=21, episodes=episodes, seed=1, refine=refine)
    loaded = load_run(run_dir)  # reads the map just written
    lo, hi = seen_range(loaded)
    commands = np.linspace(lo, hi, 21)
    row = {"run": run_dir, "env_id": loaded.run_config.env_id, "algorithm": loaded.run.config["algorithm"],
           "checkpoint_env_steps": loaded.env_steps, "map_env_steps": fit["env_steps_used"]}
    for name, raw in (("raw", True), ("mapped", False)):
        r = sweep(loaded, commands, 5, 2, raw=raw)
        row[name] = {"spearman": None if r["spearman"] is None else round(r["spearman"], 3),
                     "mae_frac": round(r["mae_frac"], 4), "achieved": [round(a, 1) for a in r["achieved_mean"]],
                     "inputs": [round(x, 1) for x in r.get("generator_inputs", commands)]}
    row["commands"] = [round(c, 1) for c in commands]
    return row


def met(s: dict) -> str:
    ok = s["spearman"] is not None and s["spearman"] >= 0.9 and s["mae_frac"] <= 0.10
    return f"{s['spearman']} / {s['mae_frac']:.1%}" + (" (both)" if ok else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--episodes", type=int, default=10, help="episodes per map command (default 10)")
    ap.add_argument("--refine", type=int, default=3, help="refinement rounds of the map (default 3)")
    ap.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for run in a.runs:
        rows.append(one(run, a.episodes, a.refine))
        print(json.dumps(rows[-1]), flush=True)
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.machine())
        meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": cpu, "commit": commit,
                "command": f"python bench/command_map.py {' '.join(a.runs)} --episodes {a.episodes} "
                                   f"--refine {a.refine} --out {a.out}"}
        Path(a.out + ".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        lines = ["# Command maps: the generator alone vs through its map\n",
                 f"{meta['date']}, {cpu}, commit {commit}. Re-run: `{meta['command']}`\n",
                 "Sweep: 21 commands over the returns seen in training, 5 episodes of seed 2 each; the map was fitted "
                 f"on {a.episodes} episodes per command (seed 1; {a.refine} refinement rounds, seeds 1001, ...).\n",
                 "| run | env | checkpoint steps | map env steps | G alone: Spearman / MAE | through the map |",
                 "|---|---|---:|---:|---|---|"]
        for r in rows:
            lines.append(f"| {Path(r['run']).name} | {r['env_id']} | {r['checkpoint_env_steps']} | "
                         f"{r['map_env_steps']} | {met(r['raw'])} | {met(r['mapped'])} |")
        Path(a.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
