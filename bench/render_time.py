#!/usr/bin/env python
"""Wall time of ``policygen render`` for one 1000-step Hopper episode to GIF (whole process, start-up included).

Needs a run (or policy file) whose policy lasts 1000 steps on Hopper-v5, e.g. ``policygen train ars --env
Hopper-v5 --steps 300000 --out runs/ars-hopper``; the video goes to a temporary folder (a 320x240 GIF of 1001
frames is ~15-20 MB, not kept). Usage:
    python bench/render_time.py --target runs/ars-hopper --rounds 2 --out bench/results/render-hopper
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from learning import commit, machine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="runs/ars-hopper")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench/results/render-hopper")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for suffix in (".gif", ".mp4"):
                video = Path(tmp) / f"hopper{r}{suffix}"
                load = os.getloadavg()
                t0 = time.perf_counter()
                res = subprocess.run([sys.executable, "-m", "policygen", "render", a.target, "--size", a.size,
                                      "--out", str(video)], check=True, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                info = json.loads(res.stdout)
                rows.append({"format": suffix, "wall_s": wall, "frames": info["frames"], "size": info["size"],
                             "lengths": info["panels"][0]["lengths"], "returns": info["panels"][0]["returns"],
                             "bytes": video.stat().st_size, "load_average_before": load})
                print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "commit": commit(), "command": " ".join(sys.argv), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
              "target": "under 60 s for a 1000-step Hopper episode to GIF", "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
