#!/usr/bin/env python
"""Calibration of G itself beside the weight average of G, from the same GoGePo run (``generator_ema`` > 0).

    python bench/generator_average.py RUN_DIR [RUN_DIR ...] [--sweep-seeds 0] [--episodes 5] [--out PREFIX]

For each run and sweep seed: the issue's sweep (21 commands evenly over the returns seen in training, 5 episodes
each, the generator alone: no command map) with G and with its average, on the same episodes' seeds, and whether
both of issue 3's targets hold (Spearman >= 0.9, MAE <= 10% of the range). Nothing in the run is changed. Prints
one JSON line per (run, sweep seed); with --out also PREFIX.json and PREFIX.md (date, machine, commit, command).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import commit, machine  # noqa: E402

from policygen.algorithms.loading import load_run  # noqa: E402
from policygen.analysis.sweep import seen_range, sweep  # noqa: E402


def _row(res: dict) -> dict:
    ok = res["spearman"] is not None and res["spearman"] >= 0.9 and res["mae_frac"] <= 0.10
    return {"spearman": round(res["spearman"] or 0.0, 3), "mae_pct": round(100 * res["mae_frac"], 1), "both": ok,
            "achieved": [round(a, 1) for a in res["achieved_mean"]]}


def compare(run_dir: str, sweep_seed: int, episodes: int) -> dict:
    loaded = load_run(run_dir)
    algo = loaded.algo
    if getattr(algo, "generator_avg", None) is None:
        raise SystemExit(f"{run_dir}: not a GoGePo run with generator_ema > 0")
    lo, hi = seen_range(loaded)
    commands = np.linspace(lo, hi, 21)
    out = {"run": run_dir, "sweep_seed": sweep_seed, "env_steps": loaded.env_steps,
           "generator_ema": algo.cfg.generator_ema, "commands": [round(c, 1) for c in commands]}
    for name, average in (("G", False), ("average", True)):
        algo.use_average = average
        out[name] = _row(sweep(loaded, commands, episodes=episodes, seed=sweep_seed, raw=True))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--sweep-seeds", default="0")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for run in a.runs:
        for s in (int(x) for x in a.sweep_seeds.split(",")):
            row = compare(run, s, a.episodes)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.out:
        meta = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                "commit": commit(), "command": shlex.join(["python", "bench/generator_average.py", *sys.argv[1:]])}
        Path(a.out + ".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        lines = [f"# G alone vs its weight average ({meta['date']}, {meta['machine']}, commit {meta['commit'][:7]})",
                 "", f"`{meta['command']}`", "",
                 "| run | sweep seed | ema | G: Spearman / MAE % | average: Spearman / MAE % |",
                 "|---|---|---|---|---|"]
        for r in rows:
            g, v = r["G"], r["average"]
            lines.append(f"| {r['run']} | {r['sweep_seed']} | {r['generator_ema']} | {g['spearman']} / {g['mae_pct']}"
                         f"{' (both)' if g['both'] else ''} | {v['spearman']} / {v['mae_pct']}"
                         f"{' (both)' if v['both'] else ''} |")
        Path(a.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
