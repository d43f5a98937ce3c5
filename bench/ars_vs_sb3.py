#!/usr/bin/env python
"""policygen's ARS beside sb3-contrib's ARS: same env, same budget, same machine, run pair by pair.

For each env and seed this runs, one after the other (never two at once):

* ours: ``policygen train ars --env ENV --steps N --seed S`` as a subprocess (the per-env preset of the ARS
  paper is picked from the env id), timed from process start to exit. Its evaluation return is then measured
  again, untimed, with ``policygen evaluate RUN --backend gymnasium --episodes 10``: the standard Gymnasium
  return of the final policy on Gymnasium's own MuJoCo env, observation statistics frozen.
* sb3-contrib: this script re-invoked as a subprocess (``--sb3-worker``) that builds sb3-contrib's ARS with
  the RL-Zoo hyperparameters of the env, learns for the same N env steps, and evaluates the final policy for
  10 deterministic episodes of a plain ``gymnasium.make(ENV)`` (VecNormalize statistics frozen). Also timed
  from process start to exit, so both sides pay their imports, env construction and final evaluation.

The two runs of a pair are adjacent in time and their order alternates with the seed, so a change in the
load of the (shared) machine hits both sides of a pair alike. The ratio is sb3 wall / our wall.

Budget counting: both count every env step of the training episodes, and neither counts evaluation steps.
Our run evaluates only at the end (``--eval-every N``), as sb3's ``learn`` does not evaluate at all.

``--steps`` is one budget for every env, or one per env (``Hopper-v5=1000000,Swimmer-v5=300000``); within an
env both implementations always get the same budget.

``--pin HEAD`` runs our side from a ``git archive`` of that commit, so commits landing on the shared work tree
during the benchmark do not mix code versions (each result records the commit it ran).

Usage (the figure of issue 2):
    python bench/ars_vs_sb3.py --envs Hopper-v5,Swimmer-v5 --seeds 0,1,2 \
        --steps Hopper-v5=1000000,Swimmer-v5=300000 --pin HEAD
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# sb3-contrib's published ARS results (README/docs benchmark table, RL-Zoo budget: 7M steps Hopper,
# 2M steps Swimmer, v3 envs); the target of issue 2 is to match them.
PUBLISHED_SB3 = {"Hopper": 3320.0, "Swimmer": 241.0}
SPEED_TARGET = 5.0

# RL-Zoo (rl-baselines3-zoo hyperparams/ars.yml) settings for sb3-contrib's ARS. The zoo evaluates
# candidates in n_envs worker processes (16 for Hopper, 2 for Swimmer); that only changes the speed, and
# is chosen here with --sb3-workers to suit the machine.
ZOO = {
    "Hopper": {"ars": dict(n_delta=8, n_top=4, learning_rate=0.01, delta_std=0.025, alive_bonus_offset=-1),
               "normalize": True},
    "Swimmer": {"ars": dict(n_delta=1, n_top=1, learning_rate=0.02, delta_std=0.01, alive_bonus_offset=0),
                "normalize": False},
}


def log(msg: str) -> None:
    print(f"[ars_vs_sb3 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------------------------- sb3 side
def sb3_worker(env_id: str, seed: int, steps: int, workers: int, episodes: int, out: str) -> None:
    """Train sb3-contrib ARS with the zoo settings, evaluate it, write a JSON result to ``out``."""
    t_start = time.perf_counter()
    import gymnasium as gym
    import numpy as np
    from sb3_contrib import ARS
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    zoo = ZOO[env_id.split("-")[0]]

    def make_env():
        venv = make_vec_env(env_id, n_envs=1)
        if zoo["normalize"]:
            venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
        return venv

    env = make_env()
    model = ARS("LinearPolicy", env, seed=seed, verbose=0, **zoo["ars"])
    async_eval = None
    if workers > 1:
        from sb3_contrib.common.vec_env import AsyncEval

        async_eval = AsyncEval([make_env for _ in range(workers)], model.policy)
        async_eval.seed(seed)
    t_learn = time.perf_counter()
    model.learn(total_timesteps=steps, async_eval=async_eval)
    learn_s = time.perf_counter() - t_learn
    if async_eval is not None:
        async_eval.close()

    # Evaluation: a plain Gymnasium env (standard return), the training normalisation frozen.
    vecnorm = env if isinstance(env, VecNormalize) else None
    if vecnorm is not None:
        vecnorm.training = False
    eval_env = gym.make(env_id)
    returns, lengths = [], []
    for ep in range(episodes):
        obs, _ = eval_env.reset(seed=10_000 + 100 * seed + ep)
        total, n, done = 0.0, 0, False
        while not done:
            x = vecnorm.normalize_obs(obs) if vecnorm is not None else obs
            action, _ = model.predict(x, deterministic=True)
            obs, r, term, trunc, _ = eval_env.step(action)
            total += float(r)
            n += 1
            done = term or trunc
        returns.append(total)
        lengths.append(n)
    eval_env.close()
    env.close()
    result = {"env_id": env_id, "seed": seed, "env_steps": int(model.num_timesteps),
              "iterations": int(model._n_updates), "learn_s": learn_s, "workers": workers,
              "eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
              "eval_returns": returns, "eval_lengths": lengths,
              "process_s_inside": time.perf_counter() - t_start, "hyperparameters": zoo}
    Path(out).write_text(json.dumps(result, indent=2))


def run_sb3(env_id: str, seed: int, steps: int, workers: int, episodes: int, work: Path) -> dict:
    out = work / f"sb3-{env_id}-s{seed}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sb3-worker", "--envs", env_id, "--seeds", str(seed),
           "--steps", str(steps), "--sb3-workers", str(workers), "--episodes", str(episodes), "--result", str(out)]
    load0 = loadavg()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    res.update(wall_s=wall, load_before=load0, load_after=loadavg())
    return res


# --------------------------------------------------------------------------------------------- our side
def pinned_source(rev: str, work: Path) -> tuple[str, Path, list[str]]:
    """Export ``src/`` of commit ``rev`` (``git archive``) so our runs use that code even if the work tree
    changes while the benchmark runs (other developers commit on the same checkout). Source files that git
    ignores but the work tree has are copied in too (and returned), so the snapshot runs as the tree does."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    dest = work / f"src-{sha[:12]}"
    ignored = [f for f in subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "src"],
                                         cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
               if f.endswith(".py") and "__pycache__" not in f]
    if not (dest / "src" / "policygen").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src"], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        for f in ignored:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            (dest / f).write_bytes((REPO / f).read_bytes())
    return sha, dest / "src", ignored


def run_ours(env_id: str, seed: int, steps: int, episodes: int, work: Path, src: Path | None = None,
             pinned: str | None = None, backend: str = "auto") -> dict:
    run_dir = work / f"ours-{env_id}-s{seed}"
    env = dict(os.environ)
    if src is not None:  # PYTHONPATH comes before the editable install's path entry
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = ["policygen", "train", "ars", "--env", env_id, "--steps", str(steps), "--seed", str(seed),
           "--out", str(run_dir), "--force", "--quiet", "--eval-every", str(steps),
           "--eval-episodes", str(episodes), "--backend", backend]
    load0 = loadavg()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    load1 = loadavg()
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    # Untimed: the final policy on Gymnasium's own env (the training run evaluates on its backend).
    ev = subprocess.run(["policygen", "evaluate", str(run_dir), "--episodes", str(episodes), "--backend",
                         "gymnasium", "--seed", str(10_000 + 100 * seed)],
                        check=True, capture_output=True, text=True, env=env)
    gym_eval = json.loads(ev.stdout)
    return {"env_id": env_id, "seed": seed, "env_steps": summary["env_steps"],
            "iterations": summary["iterations"], "train_s": summary["wall_s"], "wall_s": wall,
            "eval_return": gym_eval["mean"], "eval_return_std": gym_eval["std"],
            "eval_returns": gym_eval["returns"], "eval_backend": gym_eval["backend"],
            "train_backend_eval_return": summary["final_eval_return"],
            "preset": config.get("preset"), "algo": config.get("algo"),
            "backend": config.get("run", {}).get("backend"), "num_envs": config.get("run", {}).get("num_envs"),
            "commit": pinned or summary.get("commit"), "load_before": load0, "load_after": load1}


# --------------------------------------------------------------------------------------------- report
def machine() -> dict:
    model, cores = platform.processor(), os.cpu_count()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": cores, "platform": platform.platform()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("policygen", "torch", "numpy", "gymnasium", "mujoco", "envpool", "stable-baselines3",
                "sb3-contrib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_head() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (" (src/ modified)" if dirty else "")


def mean_std(xs: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def summarise(pairs: list[dict]) -> dict:
    out = {}
    for env_id in dict.fromkeys(p["env_id"] for p in pairs):
        ps = [p for p in pairs if p["env_id"] == env_id]
        ours = [p["ours"]["eval_return"] for p in ps]
        sb3 = [p["sb3"]["eval_return"] for p in ps]
        ow, sw = [p["ours"]["wall_s"] for p in ps], [p["sb3"]["wall_s"] for p in ps]
        ratios = [p["ratio"] for p in ps]
        published = PUBLISHED_SB3.get(env_id.split("-")[0])
        out[env_id] = {
            "ours_return_mean_std": mean_std(ours), "sb3_return_mean_std": mean_std(sb3),
            "ours_wall_mean_std": mean_std(ow), "sb3_wall_mean_std": mean_std(sw),
            "ratio_of_totals": sum(sw) / sum(ow), "ratio_mean_std": mean_std(ratios),
            "published_sb3": published,
            "return_target_met": published is not None and mean_std(ours)[0] >= published,
            "speed_target_met": sum(sw) / sum(ow) >= SPEED_TARGET,
        }
    return out


def commits_note(res: dict) -> str:
    used = sorted({str(p["ours"].get("commit")) for p in res["pairs"] if "ours" in p})
    if res.get("pinned"):
        extra = res.get("pinned_plus_untracked") or []
        return (" (our runs from `git archive` of this commit" +
                (f", plus {', '.join(extra)} which git ignores, copied from the work tree)" if extra else ")"))
    if len(used) > 1:
        return f" -- WARNING: the work tree changed during the benchmark; our runs used {', '.join(used)}"
    return ""


def describe_algo(res: dict, env_id: str) -> str:
    a = next((p["ours"].get("algo") for p in res["pairs"] if p["env_id"] == env_id and "ours" in p), None) or {}
    ver = "V2" if a.get("normalize_obs") else "V1"
    t = "-t" if a.get("top") != a.get("n_directions") else ""
    return (f"{ver}{t} N={a.get('n_directions')} b={a.get('top')} alpha={a.get('step_size')} "
            f"nu={a.get('noise')}")


def write_markdown(path: Path, res: dict) -> None:
    L = ["# ARS: policygen vs sb3-contrib", "",
         f"- date: {res['date']}", f"- commit: `{res['commit']}`" + commits_note(res),
         f"- machine: {res['machine']['cpu']}, {res['machine']['cores']} cores ({res['machine']['platform']}); "
         "shared with other work, load average before/after each run in the JSON",
         "- versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
         f"- command: `{res['command']}`",
         "- budget (env steps per run, the same for both implementations; training episodes only, evaluation "
         "not counted): " + ", ".join(f"{e} {n:,}" for e, n in res["steps"].items()) + ". " + res["budget_note"],
         f"- sb3-contrib: RL-Zoo hyperparameters, LinearPolicy, {res['sb3_workers']} evaluation worker "
         f"process(es) ({'AsyncEval' if res['sb3_workers'] > 1 else 'single process, plain learn()'})",
         "- ours: `policygen train ars` with the env's preset (src/policygen/algorithms/ars.py; "
         + "; ".join(f"{e}: {describe_algo(res, e)}" for e in res["summary"]) + "), backend "
         + {"auto": "auto (EnvPool)", "mujoco": "mujoco (Gymnasium's simulator)"}.get(
             res.get("our_backend", "auto"), res.get("our_backend", "auto")) + ", "
         "64 env slots, evaluation only at the end; the final policy is then re-evaluated on Gymnasium's env",
         "- return: mean of 10 deterministic episodes, standard Gymnasium return, final policy, obs "
         "normalisation frozen; wall: whole process (imports, envs, training, final evaluation)",
         "- ratio: sb3 wall / our wall of the same pair (the two runs adjacent in time, order alternating); "
         "training-only ratio: sb3's `learn()` time / our training loop's time (summary.json wall_s, which "
         "includes our final 10-episode evaluation), i.e. without either side's start-up (imports, envs)", ""]
    for env_id, s in res["summary"].items():
        L += [f"## {env_id}", "",
              "| seed | ours return | sb3 return | ours wall (s) | sb3 wall (s) | ratio | training-only ratio "
              "| ours steps | sb3 steps |",
              "|---|---|---|---|---|---|---|---|---|"]
        for p in (p for p in res["pairs"] if p["env_id"] == env_id):
            o, b = p["ours"], p["sb3"]
            L.append(f"| {p['seed']} | {o['eval_return']:.1f} ± {o['eval_return_std']:.1f} | "
                     f"{b['eval_return']:.1f} ± {b['eval_return_std']:.1f} | {o['wall_s']:.1f} | "
                     f"{b['wall_s']:.1f} | {p['ratio']:.2f}x | {b['learn_s'] / o['train_s']:.2f}x | "
                     f"{o['env_steps']:,} | {b['env_steps']:,} |")
        (om, osd), (bm, bsd) = s["ours_return_mean_std"], s["sb3_return_mean_std"]
        (owm, owsd), (bwm, bwsd) = s["ours_wall_mean_std"], s["sb3_wall_mean_std"]
        rm, rsd = s["ratio_mean_std"]
        L.append(f"| **mean ± std** | **{om:.1f} ± {osd:.1f}** | **{bm:.1f} ± {bsd:.1f}** | {owm:.1f} ± {owsd:.1f} | "
                 f"{bwm:.1f} ± {bwsd:.1f} | **{rm:.2f}x ± {rsd:.2f}** | | | |")
        pub = s["published_sb3"]
        L += ["", f"Published sb3-contrib return: {pub} (RL-Zoo budget); ours {om:.1f} -> return target "
              f"{'met' if s['return_target_met'] else 'NOT met'}. Ratio of total wall-clock "
              f"{s['ratio_of_totals']:.2f}x -> speed target (>= {SPEED_TARGET:g}x) "
              f"{'met' if s['speed_target_met'] else 'NOT met'}.", ""]
    if res.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    path.write_text("\n".join(L))


def parse_steps(text: str, envs: list[str], ap: argparse.ArgumentParser) -> dict[str, int]:
    try:
        if "=" not in text:
            return {e: int(float(text)) for e in envs}
        given = {k.strip(): int(float(v)) for k, v in (item.split("=", 1) for item in text.split(",") if item)}
    except ValueError:
        ap.error(f"--steps takes N or ENV=N,ENV=N; got {text!r}")
    missing = [e for e in envs if e not in given]
    if missing:
        ap.error(f"--steps gives no budget for {', '.join(missing)}")
    return {e: given[e] for e in envs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", default="Hopper-v5,Swimmer-v5", help="comma-separated env ids")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--steps", default="1000000",
                    help="env-step budget of every run: N, or per env ENV=N,ENV=N (default 1000000)")
    ap.add_argument("--episodes", type=int, default=10, help="final evaluation episodes (default 10)")
    ap.add_argument("--sb3-workers", type=int, default=1,
                    help="sb3-contrib AsyncEval worker processes (1 = plain single-process learn)")
    ap.add_argument("--our-backend", default="auto",
                    help="our training's --backend (default auto: EnvPool; mujoco trains on Gymnasium's own "
                         "simulator, the one sb3-contrib trains on)")
    ap.add_argument("--only", choices=("both", "ours", "sb3"), default="both", help="run one side only")
    ap.add_argument("--out-dir", default=str(REPO / "bench" / "results"), help="where the JSON/MD go")
    ap.add_argument("--name", default="ars_vs_sb3", help="base name of the result files")
    ap.add_argument("--work-dir", help="run directories (default: a fresh temporary directory)")
    ap.add_argument("--budget-note", default="", help="why this budget (written into the report)")
    ap.add_argument("--note", action="append", default=[], help="a note for the report, repeatable")
    ap.add_argument("--pin", metavar="REV",
                    help="run our side from `git archive REV src` (e.g. HEAD) instead of the installed work tree")
    ap.add_argument("--render", metavar="JSON", help="only re-write the Markdown of an earlier JSON (adds --note)")
    ap.add_argument("--sb3-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.render:
        res = json.loads(Path(a.render).read_text())
        res["notes"] = res.get("notes", []) + a.note
        Path(a.render).write_text(json.dumps(res, indent=2))
        write_markdown(Path(a.render).with_suffix(".md"), res)
        log(f"wrote {Path(a.render).with_suffix('.md')}")
        return 0
    envs = [e.strip() for e in a.envs.split(",") if e.strip()]
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    for e in envs:
        if e.split("-")[0] not in ZOO:
            ap.error(f"no RL-Zoo settings here for {e}; known: {', '.join(ZOO)}")
    steps = parse_steps(a.steps, envs, ap)

    if a.sb3_worker:
        sb3_worker(envs[0], seeds[0], steps[envs[0]], a.sb3_workers, a.episodes, a.result)
        return 0

    work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="ars_vs_sb3-"))
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pinned, src, untracked = pinned_source(a.pin, work) if a.pin else (None, None, [])
    if untracked:
        log(f"WARNING: src files ignored by git but needed, copied from the work tree: {untracked}")
    res = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "commit": pinned or git_head(), "pinned": bool(pinned), "pinned_plus_untracked": untracked,
           "machine": machine(), "versions": versions(),
           "command": shlex.join(["python", "bench/ars_vs_sb3.py", *sys.argv[1:]]),
           "steps": steps, "episodes": a.episodes, "our_backend": a.our_backend, "sb3_workers": a.sb3_workers,
           "budget_note": a.budget_note, "notes": a.note, "work_dir": str(work), "pairs": []}
    log(f"{len(envs)} env(s) x {len(seeds)} seed(s), steps {steps}; run dirs in {work}")
    t_all = time.perf_counter()
    for env_id in envs:
        for i, seed in enumerate(seeds):
            order = ("ours", "sb3") if i % 2 == 0 else ("sb3", "ours")
            pair = {"env_id": env_id, "seed": seed, "order": list(order)}
            for side in order:
                if a.only not in ("both", side):
                    continue
                log(f"{env_id} seed {seed}: {side} ... (load {loadavg():.2f})")
                if side == "ours":
                    r = run_ours(env_id, seed, steps[env_id], a.episodes, work, src, pinned, a.our_backend)
                    log(f"  ours: return {r['eval_return']:.1f} ± {r['eval_return_std']:.1f} "
                        f"(on its backend {r['train_backend_eval_return']:.1f}), {r['env_steps']:,} steps, "
                        f"wall {r['wall_s']:.1f} s")
                else:
                    r = run_sb3(env_id, seed, steps[env_id], a.sb3_workers, a.episodes, work)
                    log(f"  sb3:  return {r['eval_return']:.1f} ± {r['eval_return_std']:.1f}, "
                        f"{r['env_steps']:,} steps, wall {r['wall_s']:.1f} s (learn {r['learn_s']:.1f} s)")
                pair[side] = r
            if "ours" in pair and "sb3" in pair:
                pair["ratio"] = pair["sb3"]["wall_s"] / pair["ours"]["wall_s"]
                log(f"  ratio sb3/ours {pair['ratio']:.2f}x")
            res["pairs"].append(pair)
            (out_dir / f"{a.name}.json").write_text(json.dumps(res, indent=2))  # partial results as we go
    res["total_s"] = time.perf_counter() - t_all
    if a.only == "both":
        res["summary"] = summarise(res["pairs"])
        write_markdown(out_dir / f"{a.name}.md", res)
    (out_dir / f"{a.name}.json").write_text(json.dumps(res, indent=2))
    log(f"done in {res['total_s'] / 60:.1f} min; wrote {out_dir / (a.name + '.json')}")
    if a.only == "both":
        for env_id, s in res["summary"].items():
            log(f"{env_id}: ours {s['ours_return_mean_std'][0]:.1f}, sb3 {s['sb3_return_mean_std'][0]:.1f}, "
                f"ratio {s['ratio_of_totals']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
