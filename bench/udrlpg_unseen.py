#!/usr/bin/env python
"""Issue 4's unseen-returns figures for UDRLPG, re-created from scratch: learning runs over seeds (final and
last-20 evaluation returns), the unseen-returns report on each run, a hold-out band run per seed with its
report, and the FIFO-buffer ablation on the same seeds.

Variants (each a ``bench/learning.py`` call into ``--root/VARIANT``, runs one at a time):
  base     the fast preset as is (learned return range)
  holdout  ``return_range=0,1000 holdout_band=LO,HI`` (the band needs a fixed range)
  fixed    ``return_range=0,1000`` alone: the hold-out run's control, same range, nothing held out
  fifo     ``buffer=fifo``: the paper's variance ablation
A finished run or report is not redone, so an interrupted campaign continues where it stopped.
Torch runs with one thread (OMP_NUM_THREADS=1): on a shared 2-core machine two threads spin-wait.

Usage:
    PYTHONPATH=src python bench/udrlpg_unseen.py --seeds 0,1,2 --out bench/results/udrlpg-unseen
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import PG, ROOT, commit, machine  # noqa: E402

ENV = "InvertedPendulum-v5"


def variants(band: str) -> dict[str, list[str]]:
    return {"base": [], "holdout": ["return_range=0,1000", f"holdout_band={band}"],
            "fixed": ["return_range=0,1000"], "fifo": ["buffer=fifo"]}


def train(variant: str, sets: list[str], a: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Run (or finish) the variant's seeds through bench/learning.py; its per-seed results and commands."""
    out = Path(a.root) / variant / "learning"
    cmd = [sys.executable, str(ROOT / "bench" / "learning.py"), "--algo", "udrlpg", "--env", ENV,
           "--seeds", a.seeds, "--steps", str(a.steps), "--eval-every", "1000", "--eval-episodes", "5",
           "--threshold", "1000", "--root", str(Path(a.root) / variant), "--out", str(out)]
    cmd += [x for kv in sets for x in ("--set", kv)]
    print("+", shlex.join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    got = json.loads(out.with_suffix(".json").read_text())
    return got["runs"], got["commands"]


def report(run: str, a: argparse.Namespace) -> tuple[dict, str]:
    """The unseen-returns report of one run (cached in RUN/unseen.json) and its command line."""
    cmd = [*PG, "sweep", run, "--unseen-report", f"--commands={a.commands}", "--episodes", str(a.episodes)]
    path = Path(run) / "unseen.json"
    if not path.exists():
        print("+", shlex.join(cmd), file=sys.stderr, flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        path.write_text(out)
    res = json.loads(path.read_text())
    return res, shlex.join(["policygen", *cmd[len(PG):]]).replace(str(ROOT) + "/", "")


def spread(xs: list[float]) -> dict:
    x = np.array([v for v in xs if v is not None], dtype=float)
    return {"n": len(x), "mean": float(x.mean()) if len(x) else None,
            "std": float(x.std(ddof=1)) if len(x) > 1 else None,
            "min": float(x.min()) if len(x) else None, "max": float(x.max()) if len(x) else None}


def _f(v, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(meta: dict, results: dict) -> str:
    lines = [f"# UDRLPG on {ENV}: unseen returns, hold-out band, last-20 returns, FIFO ablation", "",
             "Written by `bench/udrlpg_unseen.py` (re-create it with the command at the end).", "",
             f"- date {meta['date_start']} to {meta['date_end']} (UTC); machine {meta['machine']}, shared with "
             "other jobs", f"- load average (1 min), sampled at the start and after each variant's runs and reports: "
             f"{meta['load_range']}",
             f"- commit {meta['commit']}; torch with one thread (OMP_NUM_THREADS=1); fast preset, "
             f"{meta['steps']:,} env steps, evaluation every 1000 steps (5 episodes)",
             f"- unseen reports: `--commands={meta['commands_grid']}`, {meta['episodes']} episodes per command", "",
             "## Learning: final and last-20 evaluation returns (seeds " + meta["seeds"] + ")", "",
             "| variant | seed | final eval | last-20 mean (n) | first eval >= 1000 (steps / wall) | env steps "
             "| wall |", "|---|---:|---:|---:|---|---:|---:|"]
    for v, r in results.items():
        for run in r["runs"]:
            f = run["first_at_threshold"]
            first = "never" if f is None else "{:,} / {:.0f} s".format(f["env_steps"], f["wall_s"])
            lines.append(f"| {v} | {run['seed']} | {_f(run['final_eval'])} | {_f(run['last20_eval_mean'])} "
                         f"({run['last20_eval_count']}) | {first} | {run['env_steps']:,} | {run['wall_s']:.0f} s |")
    lines += ["", "Spread across seeds (sample std, ddof 1):", "",
              "| variant | final: mean ± std [min, max] | last-20: mean ± std [min, max] |", "|---|---|---|"]
    for v, r in results.items():
        fs, ls = r["spread_final"], r["spread_last20"]
        lines.append(f"| {v} | {_f(fs['mean'])} ± {_f(fs['std'])} [{_f(fs['min'])}, {_f(fs['max'])}] | "
                     f"{_f(ls['mean'])} ± {_f(ls['std'])} [{_f(ls['min'])}, {_f(ls['max'])}] |")
    lines += ["", "## Unseen-returns report per run", "",
              "MAE is mean |achieved - commanded|; % is of the run's stored return range; err is the mean signed "
              "error (achieved - commanded); rho is Spearman within the group (n >= 3).", "",
              "| variant | seed | stored range | filled buckets | held out | group | n | MAE | % range | err | rho |",
              "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for v, r in results.items():
        for seed, rep in zip(r["seeds"], r["reports"], strict=True):
            u = rep["unseen"]
            lo, hi = u["stored_range"]
            for k, (g, s) in enumerate(u["summary"].items()):
                head = (f"| {v} | {seed} | [{lo:.0f}, {hi:.0f}] | {u['filled_buckets']} | {u['held_out_policies']} "
                        if k == 0 else "| | | | | ")
                lines.append(head + f"| {g} | {s['n']} | {s['mae']:.1f} | {_f(100 * s['mae_frac'])} | "
                             f"{s['mean_error']:.1f} | {_f(s['spearman'], '.3f')} |")
    lines += ["", "## Commands", "", "```", *meta["train_commands"], *meta["report_commands"], "```", "",
              f"Re-create: `{meta['rerun']}`", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--band", default="0.4,0.6", help="holdout_band of the hold-out variant")
    p.add_argument("--variants", default="base,holdout,fifo,fixed", help="which variants, in order")
    p.add_argument("--commands", default="0:1200:49", help="report commands (the same for every run)")
    p.add_argument("--episodes", type=int, default=5, help="episodes per report command")
    p.add_argument("--root", default="runs/unseen")
    p.add_argument("--out", default="bench/results/udrlpg-unseen")
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    start, loads = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), [os.getloadavg()[0]]
    results, train_cmds, report_cmds = {}, [], []
    for v in a.variants.split(","):
        runs, cmds = train(v, variants(a.band)[v], a)
        loads.append(os.getloadavg()[0])
        train_cmds += cmds
        reports = []
        for run in runs:
            rep, cmd = report(run["run"], a)
            reports.append(rep)
            report_cmds.append(cmd)
        loads.append(os.getloadavg()[0])
        results[v] = {"sets": variants(a.band)[v], "seeds": [r["seed"] for r in runs], "runs": runs,
                      "spread_final": spread([r["final_eval"] for r in runs]),
                      "spread_last20": spread([r["last20_eval_mean"] for r in runs]),
                      "reports": reports}
    meta = {"date_start": start, "date_end": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "commit": commit(), "load_samples_1min": loads,
            "load_range": f"{min(loads):.1f}-{max(loads):.1f}", "seeds": a.seeds, "steps": a.steps,
            "commands_grid": a.commands, "episodes": a.episodes, "train_commands": train_cmds,
            "report_commands": report_cmds, "rerun": "PYTHONPATH=src python bench/udrlpg_unseen.py "
            + shlex.join(sys.argv[1:])}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({**meta, "results": results}, indent=2))
    Path(a.out + ".md").write_text(markdown(meta, results))
    print(Path(a.out + ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
