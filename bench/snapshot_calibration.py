#!/usr/bin/env python
"""Calibration along training: ``policygen sweep --snapshot`` on every snapshot of each run, then the latest.

Runs must have been trained with ``--snapshots N``. For each run and checkpoint this prints and records the
Spearman correlation and the mean absolute error (% of the seen range) of the default sweep (21 commands over
the returns seen up to that checkpoint, ``--episodes`` each), and whether both of issue 3's targets hold
(Spearman >= 0.9, MAE <= 10%). Writes ``--out`` (JSON and a Markdown table) with date, machine and commit.

Usage:
    python bench/snapshot_calibration.py runs/ip-u025-1m/gogepo-InvertedPendulum-v5-s* --out bench/results/X
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import PG, commit, machine  # noqa: E402


def sweep(run: Path, snapshot: str | None, episodes: int) -> dict:
    cmd = [*PG, "sweep", str(run), "--episodes", str(episodes), *(["--snapshot", snapshot] if snapshot else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    return {"checkpoint": res["checkpoint"], "env_steps": res["env_steps"], "spearman": res["spearman"],
            "mae_frac": res["mae_frac"], "met": res["spearman"] >= 0.9 and res["mae_frac"] <= 0.10,
            "command": shlex.join(["policygen", *cmd[len(PG):]])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (gogepo, udrlpg) trained with --snapshots N")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--out", required=True, help="results path without extension (.json and .md written)")
    a = p.parse_args()
    results = []
    for run in map(Path, a.runs):
        snaps = sorted(f.name for f in (run / "checkpoints").glob("snapshot-*.safetensors"))
        rows = [sweep(run, s, a.episodes) for s in [*snaps, None]]
        results.append({"run": str(run), "seed": json.loads((run / "config.json").read_text())["run"]["seed"],
                        "checkpoints": rows})
        print(run, " ".join(f"{r['env_steps']}:{r['spearman']:.2f}/{100 * r['mae_frac']:.1f}%" for r in rows),
              flush=True)
    meta = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
            "commit": commit(), "command": shlex.join(["python", *sys.argv])}
    Path(a.out + ".json").write_text(json.dumps({**meta, "runs": results}, indent=1))
    lines = ["# Calibration along training", "",
             f"{meta['date']}, {meta['machine']}, commit {meta['commit'][:10]}. Re-run: `{meta['command']}`", "",
             "Spearman / MAE % of the seen range at each kept checkpoint (env steps); **bold**: both targets met.", "",
             "| seed | " + " | ".join("checkpoint" for _ in results[0]["checkpoints"]) + " |",
             "|---:|" + "---|" * len(results[0]["checkpoints"])]
    for r in results:
        cells = []
        for c in r["checkpoints"]:
            figure = f"{c['spearman']:.2f} / {100 * c['mae_frac']:.1f}%"
            cells.append(f"{c['env_steps'] / 1000:.0f}k: " + (f"**{figure}**" if c["met"] else figure))
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    met = sum(c["met"] for r in results for c in r["checkpoints"])
    total = sum(len(r["checkpoints"]) for r in results)
    lines += ["", f"Both targets met at {met} of {total} checkpoints."]
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
