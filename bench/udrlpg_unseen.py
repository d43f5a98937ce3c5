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
import csv
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
RANGE = (0.0, 1000.0)
"""The fixed return range of the hold-out and control variants (InvertedPendulum's hand-set one)."""


NOTES = "<!-- notes by hand: kept when the script rewrites this file -->"


def variants(band: str) -> dict[str, list[str]]:
    fixed = f"return_range={RANGE[0]:g},{RANGE[1]:g}"
    return {"base": [], "holdout": [fixed, f"holdout_band={band}"], "fixed": [fixed], "fifo": ["buffer=fifo"]}


def band_raw(band: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in band.split(","))
    return RANGE[0] + lo * (RANGE[1] - RANGE[0]), RANGE[0] + hi * (RANGE[1] - RANGE[0])


def stored_in_band(run: str, band: tuple[float, float]) -> int:
    """Policies the run's final buffer holds with a return inside the band (raw units): how much the
    hold-out actually removed is this count in the control run against the hold-out run's."""
    from policygen.algorithms.loading import load_run

    r = load_run(run).algo.buffer.stored_returns()
    return int(((r >= band[0]) & (r <= band[1])).sum())


def train(variant: str, sets: list[str], a: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Run (or finish) the variant's seeds through bench/learning.py; its per-seed results and commands."""
    out = Path(a.root) / variant / "learning"
    cmd = [sys.executable, str(ROOT / "bench" / "learning.py"), "--algo", "udrlpg", "--env", ENV,
           "--seeds", a.seeds, "--steps", str(a.steps), "--eval-every", "1000", "--eval-episodes", "5",
           "--threshold", "1000", "--root", str(Path(a.root) / variant), "--out", str(out)]
    cmd += [x for kv in sets for x in ("--set", kv)]
    done = out.with_suffix(".json")
    seeds = [int(x) for x in a.seeds.split(",")]
    # learning.py rewrites its JSON (and load sample) on every call: call it only while runs are missing
    if not done.exists() or [r["seed"] for r in json.loads(done.read_text())["runs"]] != seeds:
        print("+", shlex.join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    got = json.loads(done.read_text())
    return got["runs"], got["commands"], got["load_average_at_end"]


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


def late_window(run: dict, steps: int = 20_000) -> dict:
    """Evaluations in the run's last ``steps`` env steps, and the run's commit (from its own files).

    The paper evaluates every 1k steps with one episode per iteration, so its last 20 evaluations are the
    last 20k steps. An iteration of the fast preset takes thousands of steps and the trainer evaluates at
    most once per iteration, so its last 20 evaluations reach back to early learning: this is the
    paper-like window beside them.
    """
    rows = [r for r in csv.DictReader(open(Path(run["run"]) / "metrics.csv")) if r["eval_return"]]
    late = [float(r["eval_return"]) for r in rows if int(r["env_steps"]) > run["env_steps"] - steps]
    summary = json.loads((Path(run["run"]) / "summary.json").read_text())
    done = _dt.datetime.fromtimestamp((Path(run["run"]) / "summary.json").stat().st_mtime, _dt.UTC)
    return {"late_eval_mean": float(np.mean(late)) if late else None, "late_eval_count": len(late),
            "evaluations": len(rows), "commit": summary.get("commit"),
            "finished": done.isoformat(timespec="seconds")}


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
             f"- runs finished {meta['runs_finished'][0]} to {meta['runs_finished'][1]} (UTC); this file written "
             f"{meta['date_end']}; machine {meta['machine']}, shared with other jobs",
             "- load average (1/5/15 min) when each variant's last run ended: "
             + ", ".join(f"{v} {'/'.join(map(str, x))}" for v, x in meta["load_after_training"].items()),
             f"- runs made at commit {', '.join(meta['run_commits'])}; this file written at {meta['commit']}; "
             f"torch with one thread (OMP_NUM_THREADS=1); fast preset, "
             f"{meta['steps']:,} env steps, evaluation every 1000 steps (5 episodes)",
             f"- unseen reports: `--commands={meta['commands_grid']}`, {meta['episodes']} episodes per command", "",
             "## Learning: final and last-20 evaluation returns (seeds " + meta["seeds"] + ")", "",
             "`last-20` is summary.json's `last20_eval_mean` (n evaluations); `last 20k steps` averages the "
             "evaluations in the last 20,000 env steps, the paper's window (it evaluates every 1k steps). The "
             "trainer evaluates at most once per iteration and a fast-preset iteration takes thousands of steps, "
             "so a run has only about 15-20 evaluations and `last-20` covers nearly all of learning.", "",
             "| variant | seed | final eval | last-20 mean (n) | last 20k steps (n) | first eval >= 1000 "
             "(steps / wall) | env steps | wall |", "|---|---:|---:|---:|---:|---|---:|---:|"]
    for v, r in results.items():
        for run in r["runs"]:
            f = run["first_at_threshold"]
            first = "never" if f is None else "{:,} / {:.0f} s".format(f["env_steps"], f["wall_s"])
            lines.append(f"| {v} | {run['seed']} | {_f(run['final_eval'])} | {_f(run['last20_eval_mean'])} "
                         f"({run['last20_eval_count']}) | {_f(run['late_eval_mean'])} ({run['late_eval_count']}) "
                         f"| {first} | {run['env_steps']:,} | {run['wall_s']:.0f} s |")
    lines += ["", "Spread across seeds (sample std, ddof 1):", "",
              "| variant | final | last-20 | last 20k steps |", "|---|---|---|---|"]
    for v, r in results.items():
        cells = [f"{_f(x['mean'])} ± {_f(x['std'])} [{_f(x['min'])}, {_f(x['max'])}]"
                 for x in (r["spread_final"], r["spread_last20"], r["spread_late"])]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append("\nCells: mean ± std [min, max] over the seeds.")
    lines += ["", "## Unseen-returns report per run", "",
              "MAE is mean |achieved - commanded|; % is of the run's stored return range; err is the mean signed "
              "error (achieved - commanded); rho is Spearman within the group (n >= 3).", "",
              f"`in band`: policies the final buffer holds with a return in {meta['band_raw']}; `held out`: policies "
              "the hold-out run kept out of the buffer over the whole run.", "",
              "| variant | seed | stored range | filled buckets | in band | held out | group | n | MAE | % range | err "
              "| rho |", "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for v, r in results.items():
        for run, rep in zip(r["runs"], r["reports"], strict=True):
            u = rep["unseen"]
            lo, hi = u["stored_range"]
            for k, (g, s) in enumerate(u["summary"].items()):
                head = (f"| {v} | {run['seed']} | [{lo:.0f}, {hi:.0f}] | {u['filled_buckets']} | "
                        f"{run['stored_in_band']} | {u['held_out_policies']} " if k == 0 else "| | | | | | ")
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
    start, loads = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), {}
    results, train_cmds, report_cmds = {}, [], []
    for v in a.variants.split(","):
        runs, cmds, load = train(v, variants(a.band)[v], a)
        runs = [{**r, **late_window(r), "stored_in_band": stored_in_band(r["run"], band_raw(a.band))} for r in runs]
        loads[v] = [round(x, 2) for x in load]
        train_cmds += cmds
        reports = []
        for run in runs:
            rep, cmd = report(run["run"], a)
            reports.append(rep)
            report_cmds.append(cmd)
        results[v] = {"sets": variants(a.band)[v], "seeds": [r["seed"] for r in runs], "runs": runs,
                      "spread_final": spread([r["final_eval"] for r in runs]),
                      "spread_last20": spread([r["last20_eval_mean"] for r in runs]),
                      "spread_late": spread([r["late_eval_mean"] for r in runs]),
                      "reports": reports}
    fin = [r["finished"] for v in results.values() for r in v["runs"]]
    meta = {"date_start": start, "date_end": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "commit": commit(), "load_after_training": loads,
            "run_commits": sorted({r["commit"] for v in results.values() for r in v["runs"]}),
            "runs_finished": [min(fin), max(fin)], "seeds": a.seeds, "steps": a.steps,
            "commands_grid": a.commands, "band_raw": list(band_raw(a.band)), "episodes": a.episodes,
            "train_commands": train_cmds,
            "report_commands": report_cmds, "rerun": "PYTHONPATH=src python bench/udrlpg_unseen.py "
            + shlex.join(sys.argv[1:])}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps({**meta, "results": results}, indent=2))
    md = Path(a.out + ".md")
    # notes written by hand below NOTES survive a re-run (they read the numbers; the script cannot)
    notes = md.read_text().split(NOTES, 1)[1] if md.exists() and NOTES in md.read_text() else "\n"
    md.write_text(markdown(meta, results) + "\n" + NOTES + notes)
    print(Path(a.out + ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
