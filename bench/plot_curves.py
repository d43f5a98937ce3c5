#!/usr/bin/env python
"""Evaluation return of runs against env steps and against wall-clock seconds, side by side in one PNG.

Each argument is LABEL=RUN_DIR[,RUN_DIR...]; runs of one label are drawn in one colour. Reads only
metrics.csv, so a run still going (or stopped) is drawn as far as it got.

Usage:
    python bench/plot_curves.py --out bench/results/gogepo-ip-curves.png \
        fast=runs/bench-ip/gogepo-InvertedPendulum-v5-s0,runs/bench-ip/gogepo-InvertedPendulum-v5-s1 \
        paper=runs/bench-paper/gogepo-paper-InvertedPendulum-v5-s0
"""

from __future__ import annotations

import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(run: str) -> tuple[list[float], list[float], list[float]]:
    steps, wall, ret = [], [], []
    with open(f"{run}/metrics.csv") as f:
        for r in csv.DictReader(f):
            if r["eval_return"]:
                steps.append(int(r["env_steps"]))
                wall.append(float(r["wall_s"]))
                ret.append(float(r["eval_return"]))
    return steps, wall, ret


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    fig, (ax_s, ax_w) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for k, spec in enumerate(a.runs):
        label, dirs = spec.split("=", 1)
        for i, run in enumerate(dirs.split(",")):
            steps, wall, ret = curve(run)
            kw = dict(color=f"C{k}", lw=1.2, alpha=0.8, label=label if i == 0 else None)
            ax_s.plot(steps, ret, **kw)
            ax_w.plot(wall, ret, **kw)
    ax_s.set_xlabel("env steps")
    ax_w.set_xlabel("wall-clock seconds")
    ax_w.set_xscale("log")
    for ax in (ax_s, ax_w):
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(a.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
