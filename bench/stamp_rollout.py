"""Adds date, machine and commit to a `policygen bench rollout` JSON file and prints its main figures.

Usage: python bench/stamp_rollout.py FILE (bench/rollout.sh and bench/rollout_procs.sh call it).
"""

import datetime
import json
import subprocess
import sys

FIGURES = ("backend", "env_id", "num_envs", "env_threads", "policies", "engine_steps_per_s", "raw_steps_per_s",
           "ratio", "slot_utilisation", "backend_share", "peak_rss_mb")

path = sys.argv[1]
with open(path) as f:
    d = json.load(f)
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
d.update(date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), machine=f"{cpu}, {d['cpus']} cores",
         commit=subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
with open(path, "w") as f:
    json.dump(d, f, indent=2)
print(json.dumps({k: d.get(k) for k in FIGURES}))
