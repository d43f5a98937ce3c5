"""The environment backends side by side on one machine, in one run: engine speed and a whole ARS run.

For each of envpool, mujoco and gymnasium (alternated, ``--rounds`` times):
- ``policygen bench rollout --env E --policies 64 --hidden 256,256 --num-envs 16 --seconds S`` on Hopper-v5 and
  Swimmer-v5: the engine's env steps/s (and the raw backend's, each beside its own engine);
- ``policygen train ars --env Swimmer-v5 --steps 500000 --seed 1 --eval-every 500000 --backend B``: the run's
  training wall (summary.json) and its final evaluation return.
mujoco and gymnasium give the same numbers (tests/test_mujoco_backend.py); EnvPool simulates differently.

Usage: python bench/backends.py [--seconds 20] [--rounds 2] [--out bench/results/backends]
Writes OUT.json (every measurement, date, machine, commit) and OUT.md (the medians).
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = [sys.executable, "-m", "policygen"]
BACKENDS = ("envpool", "mujoco", "gymnasium")


def rollout(env: str, backend: str, seconds: float) -> dict:
    out = subprocess.run([*PG, "bench", "rollout", "--env", env, "--policies", "64", "--hidden", "256,256",
                          "--num-envs", "16", "--seconds", str(seconds), "--backend", backend],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    return {k: d[k] for k in ("engine_steps_per_s", "raw_steps_per_s", "ratio")}


def ars(backend: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*PG, "train", "ars", "--env", "Swimmer-v5", "--steps", "500000", "--seed", "1",
                        "--eval-every", "500000", "--backend", backend, "--out", f"{tmp}/run"],
                       capture_output=True, text=True, check=True)
        s = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return {"train_wall_s": s["wall_s"], "final_eval_return": s["final_eval_return"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench/results/backends")
    a = p.parse_args()
    rows = []
    for r in range(a.rounds):
        for b in BACKENDS:
            for env in ("Hopper-v5", "Swimmer-v5"):
                rows.append({"round": r, "backend": b, "what": f"engine {env}", **rollout(env, b, a.seconds)})
                print(json.dumps(rows[-1]), flush=True)
            rows.append({"round": r, "backend": b, "what": "ars Swimmer-v5 500k seed 1", **ars(b)})
            print(json.dumps(rows[-1]), flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    meta = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{cpu}, {len(open('/proc/cpuinfo').read().split('processor')) - 1} cores", "commit": commit,
            "command": "python bench/backends.py " + " ".join(sys.argv[1:])}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    med = lambda b, what, k: statistics.median(x[k] for x in rows if x["backend"] == b and x["what"] == what)  # noqa: E731
    lines = [f"# Backends side by side ({meta['date']}, {meta['machine']}, commit {commit[:7]})", "",
             f"`{meta['command']}`; medians of {a.rounds} alternated rounds; 64 policies of 2x256 on 16 slots.", "",
             "| backend | engine Hopper-v5 steps/s | engine Swimmer-v5 steps/s | ARS Swimmer 500k train wall (s) "
             "| its final return |", "|---|---:|---:|---:|---:|"]
    for b in BACKENDS:
        lines.append(f"| {b} | {med(b, 'engine Hopper-v5', 'engine_steps_per_s'):,.0f} "
                     f"| {med(b, 'engine Swimmer-v5', 'engine_steps_per_s'):,.0f} "
                     f"| {med(b, 'ars Swimmer-v5 500k seed 1', 'train_wall_s'):.1f} "
                     f"| {med(b, 'ars Swimmer-v5 500k seed 1', 'final_eval_return'):.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
