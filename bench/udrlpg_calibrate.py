"""Does a post-training fit with even bucket sampling calibrate a UDRLPG generator?

    python bench/udrlpg_calibrate.py RUN_DIR [RUN_DIR ...] --updates 500,2000 [--out PREFIX]

`fast` draws buffer buckets by exp(1.0 * rank): nearly every update fits G at the top few buckets, so G(low
command) is barely trained and the command sweep misses its calibration targets. This takes a finished run,
re-fits G for N more updates drawing every non-empty bucket equally (no env steps), and sweeps 21 commands over
the seen returns (5 episodes each) before and after, plus 10 episodes at the run's best command c*. The run
directory is not changed. Prints one JSON line per (run, updates); with --out also PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.loading import load_run
from policygen.analysis.sweep import seen_range, sweep


def _summary(result: dict) -> dict:
    return {"spearman": round(result["spearman"], 3), "mae_frac": round(result["mae_frac"], 4),
            "achieved": [round(a, 1) for a in result["achieved_mean"]]}


def calibrate(run_dir: str, updates: int) -> dict:
    loaded = load_run(run_dir)
    algo = loaded.algo
    lo, hi = seen_range(loaded)
    commands = np.linspace(lo, hi, 21)
    best = np.array([algo.eval_policy()[1]])
    before, before_best = sweep(loaded, commands), sweep(loaded, best, episodes=10)
    algo.buffer = copy.deepcopy(algo.buffer)
    algo.buffer.weighting, algo.buffer.uniform_mix = "uniform", 0.0
    t0 = time.perf_counter()
    algo.fit(updates)
    fit_s = time.perf_counter() - t0
    after, after_best = sweep(loaded, commands), sweep(loaded, best, episodes=10)
    return {"run": run_dir, "updates": updates, "fit_s": round(fit_s, 1), "best_command": float(best[0]),
            "before": {**_summary(before), "at_best": round(before_best["achieved_mean"][0], 1)},
            "after": {**_summary(after), "at_best": round(after_best["achieved_mean"][0], 1)},
            "commands": [round(c, 1) for c in commands]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--updates", default="2000", help="comma list of update counts (each from the saved run)")
    ap.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for run in a.runs:
        for n in (int(x) for x in a.updates.split(",")):
            rows.append(calibrate(run, n))
            print(json.dumps(rows[-1]), flush=True)
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.processor()
                or platform.machine(), "commit": commit, "command": "python bench/udrlpg_calibrate.py "
                + " ".join(a.runs) + f" --updates {a.updates} --out {a.out}"}
        Path(a.out + ".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        lines = ["# UDRLPG: a post-training fit with even bucket sampling\n", f"{meta['date']}, commit {commit}. "
                 f"Re-run: `{meta['command']}`\n", "| run | updates | fit s | before: Spearman / MAE | after | "
                 "at c* before / after (10 ep.) |", "|---|---:|---:|---|---|---|"]
        for r in rows:
            b, f = r["before"], r["after"]
            lines.append(f"| {Path(r['run']).name} | {r['updates']} | {r['fit_s']} | {b['spearman']} / "
                         f"{b['mae_frac']:.1%} | {f['spearman']} / {f['mae_frac']:.1%} | {b['at_best']} / "
                         f"{f['at_best']} |")
        Path(a.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
