#!/usr/bin/env python
"""Wall time of the same training run with ``--tensorboard`` off and on, side by side.

Each round trains the run twice in fresh processes (order alternating between rounds, so drift in the
machine's load hits both alike) and reads ``wall_s`` from summary.json (the training loop's own time,
without start-up). The ratio is median(on) / median(off). On a machine shared with other jobs the load
moves more than 5% between runs, so the logger's own cost is measured too, directly: the metrics rows of
one run replayed into ``TensorBoardLog.write`` (timed, then flushed and closed), as a share of that run's
wall time per row. Usage:
    python bench/tensorboard_overhead.py --algo ars --env InvertedPendulum-v5 --steps 50000 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from learning import commit, machine  # noqa: E402


def train(a, out: Path, tensorboard: bool) -> dict:
    cmd = [sys.executable, "-m", "policygen", "train", a.algo, "--env", a.env, "--steps", str(a.steps),
           "--seed", "0", "--out", str(out), "--force", "--quiet", "--eval-every", str(a.eval_every)]
    if tensorboard:
        cmd.append("--tensorboard")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    s = json.loads((out / "summary.json").read_text())
    rows = sum(1 for _ in open(out / "metrics.csv")) - 1
    return {"tensorboard": tensorboard, "wall_s": s["wall_s"], "iterations": s["iterations"], "rows": rows,
            "final_eval_return": s["final_eval_return"], "load_average": os.getloadavg()}


def replay_cost(run: Path, tmp: Path) -> dict:
    """Seconds ``TensorBoardLog.write`` takes for the run's metrics rows (what the trainer hands it)."""
    import csv
    import time

    from policygen.runs.tblog import TensorBoardLog

    rows = [{k: _num(v) for k, v in r.items() if v != ""} for r in csv.DictReader(open(run / "metrics.csv"))]
    log = TensorBoardLog(tmp / "replay")
    t0 = time.perf_counter()
    for r in rows:
        log.write(r)
    t_write = time.perf_counter() - t0
    log.close()
    wall = json.loads((run / "summary.json").read_text())["wall_s"]
    return {"rows": len(rows), "write_s": t_write, "write_ms_per_row": 1000 * t_write / len(rows),
            "close_s": time.perf_counter() - t0 - t_write, "run_wall_s": wall, "share_of_wall": t_write / wall}


def _num(v: str):
    try:
        return int(v)
    except ValueError:
        return float(v)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", default="ars")
    ap.add_argument("--env", default="InvertedPendulum-v5")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--eval-every", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/tensorboard-overhead")
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for tb in ((False, True) if r % 2 == 0 else (True, False)):
                runs.append(train(a, Path(tmp) / f"r{r}-{int(tb)}", tb))
                print(json.dumps(runs[-1]), file=sys.stderr)
        replay = replay_cost(Path(tmp) / "r0-1", Path(tmp))
    off = statistics.median(x["wall_s"] for x in runs if not x["tensorboard"])
    on = statistics.median(x["wall_s"] for x in runs if x["tensorboard"])
    result = {"date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "commit": commit(), "command": " ".join(sys.argv), "median_wall_off_s": off, "median_wall_on_s": on,
              "ratio_on_over_off": on / off, "target": "<= 1.05", "replay": replay, "runs": runs}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"median wall: off {off:.2f} s, on {on:.2f} s, ratio {on / off:.3f} (target <= 1.05); logger's own "
          f"cost {replay['write_ms_per_row']:.3f} ms per row, {100 * replay['share_of_wall']:.3f}% of the run's wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
