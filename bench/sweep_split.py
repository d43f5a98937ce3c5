#!/usr/bin/env python
"""Whose error a GoGePo sweep's miss is, for sweep JSONs already written (``policygen sweep`` prints it for new ones).

For each file: Spearman, MAE (% of the commands' span), the evaluator's error mean |achieved - V(G(c))| and the
generator's mean |V(G(c)) - c| (``analysis.sweep.error_split``; the MAE is at most their sum), over all commands
and over the middle third (commands 8-14 of 21), with the signed mean of each in the middle third. Prints a
Markdown table; reads JSON only, runs nothing.

Usage:
    python bench/sweep_split.py bench/results/gogepo-hopper-mujoco/sweep-s*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from policygen.analysis.sweep import error_split


def middle(result: dict) -> dict:
    """The same split over the middle third of the commands, signed: + means achieved > V, or V > G's input."""
    n = len(result["commands"])
    m = slice(n // 3, n - n // 3)
    c = np.asarray(result["commands"], dtype=float)
    x = np.asarray(result.get("generator_inputs", c), dtype=float)  # G's input: the command, or a map's
    a, v, span = np.asarray(result["achieved_mean"]), np.asarray(result["evaluator_prediction"]), c.max() - c.min()
    return {"evaluator": float(np.mean((a - v)[m]) / span), "generator": float(np.mean((v - x)[m]) / span)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="sweep JSON files of GoGePo runs (with evaluator_prediction)")
    a = p.parse_args()
    print("| sweep | Spearman | MAE % | V's error % | G's error % | middle third, achieved - V % "
          "| middle third, V - c % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in a.files:
        r = json.loads(Path(f).read_text())
        if not isinstance(r, dict) or "achieved_mean" not in r:
            print(f"| {f} | not a sweep JSON |||||")
            continue
        split = error_split(r)
        if not split:
            print(f"| {f} | no evaluator predictions |||||")
            continue
        mid = middle(r)
        rho = "undefined" if r["spearman"] is None else f"{r['spearman']:.2f}"
        print(f"| {f} | {rho} | {100 * r['mae_frac']:.1f} | {100 * split['evaluator_error_frac']:.1f} "
              f"| {100 * split['generator_error_frac']:.1f} | {100 * mid['evaluator']:+.1f} "
              f"| {100 * mid['generator']:+.1f} |")


if __name__ == "__main__":
    main()
