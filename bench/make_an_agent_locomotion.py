"""Make-An-Agent on a locomotion task: does a prompt of a given quality give a policy of that quality?

1. ARS runs (small MLP policies), or SB3 SAC runs with ``--source sac`` (as the paper), with snapshots along
   training: seeds --train-seeds make the training data, seed --heldout-seed only the prompts (its checkpoints
   were never seen by the model);
2. ``collect`` both (checkpoints + noisy copies: varied quality on purpose);
3. ``train make-an-agent`` on the training data set (all three stages; a completed model of the same settings
   is reused, so a re-run only measures again);
4. one generated policy per held-out prompt, each evaluated for --episodes episodes;
   Spearman between the prompt episode's return and the generated policy's mean return (target >= 0.8);
5. seconds to generate and decode 100 policies (model loaded; files not written), and with the 100 files.

    PYTHONPATH=src python bench/make_an_agent_locomotion.py --root runs/maa-bench \
        --out bench/results/make-an-agent-hopper
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.base import make_config
from policygen.algorithms.make_an_agent.collect import collect, collect_sb3
from policygen.algorithms.make_an_agent.generate import generate_policies, read_prompts
from policygen.algorithms.make_an_agent.model import MakeAnAgentConfig
from policygen.algorithms.make_an_agent.train import load_make_an_agent, train_make_an_agent
from policygen.algorithms.trainer import git_commit
from policygen.analysis.stats import spearman
from policygen.buffers.policy_dataset import PromptLayout
from policygen.envs.stats import RunningStats
from policygen.rollout.engine import RolloutEngine
from policygen.runs.rundir import RunDir


def training_run(source: str, root: Path, env: str, seed: int, steps: int, hidden: str, snapshots: int) -> str:
    out = root / f"{source}-s{seed}"
    if not (out / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "policygen", "train", source, "--env", env, "--steps", str(steps),
                        "--set", f"hidden={hidden}", "--snapshots", str(snapshots), "--seed", str(seed),
                        "--out", str(out), "--quiet", "--force"],
                       check=True, stdout=subprocess.DEVNULL)
    return str(out)


def collect_from(source: str, runs: list[str], out: Path, copies: int, seed: int, layout: PromptLayout) -> None:
    if source == "sac":
        collect_sb3(runs, None, str(out), copies, 0.5, seed=seed, layout=layout, log=print)
    else:
        collect(runs, str(out), copies, 0.5, seed=seed, layout=layout, log=print)


def train_or_reuse(root: Path, overrides: dict[str, str]) -> RunDir:
    """Train the model of ``root/maa``, or reuse it when it is complete and has exactly these settings
    (a re-run then only measures again)."""
    path = root / "maa"
    if (path / "summary.json").exists():
        run = RunDir.open(path)
        cfg = run.config
        if make_config(MakeAnAgentConfig, cfg["algo"], None) != make_config(MakeAnAgentConfig, None, overrides) \
                or Path(cfg["dataset"]).resolve() != (root / "data-train").resolve():
            sys.exit(f"{path} was trained with other settings or data; use another --root")
        print(f"[bench] reusing the trained model {path}")
        return run
    return train_make_an_agent(str(root / "data-train"), str(path), overrides, log=print)


def evaluate(model, thetas: torch.Tensor, env: str, episodes: int, seed: int) -> np.ndarray:
    engine = RolloutEngine(env, model.spec, num_envs=32, seed=seed)
    engine.obs_stats = RunningStats.from_mean_std(model.ref_mean, model.ref_std)
    try:
        return engine.evaluate(thetas, episodes=episodes, count_steps=False).returns
    finally:
        engine.close()


def machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor()}, {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--root", default="runs/maa-bench")
    p.add_argument("--out", default="bench/results/make-an-agent-hopper")
    p.add_argument("--train-seeds", default="0,1,2,3")
    p.add_argument("--heldout-seed", type=int, default=4)
    p.add_argument("--source", choices=("ars", "sac"), default="ars", help="the training runs' algorithm")
    p.add_argument("--steps", "--ars-steps", dest="steps", type=int, default=300_000, metavar="N",
                   help="env steps of each training run (ARS or SAC; --ars-steps is the older name)")
    p.add_argument("--hidden", default="16", help="the runs' policy hidden layers (SAC: its actor's)")
    p.add_argument("--snapshots", type=int, default=8)
    p.add_argument("--copies", type=int, default=15)
    p.add_argument("--heldout-copies", type=int, default=7)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--samples", type=int, default=1,
                   help="also generate this many policies per prompt and correlate their mean return (1: off)")
    p.add_argument("--set", action="append", default=[], help="make-an-agent setting KEY=VALUE")
    p.add_argument("--prompt-steps", type=int, default=60, help="opening steps a prompt covers (paper: 60)")
    p.add_argument("--state-every", type=int, default=3, help="keep every N-th state of them (paper: 3)")
    a = p.parse_args()
    torch.set_num_threads(1)
    root, t_start, load0 = Path(a.root), time.time(), os.getloadavg()
    seeds = [int(s) for s in a.train_seeds.split(",")]
    t0 = time.perf_counter()
    runs = [training_run(a.source, root, a.env, s, a.steps, a.hidden, a.snapshots)
            for s in [*seeds, a.heldout_seed]]
    source_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    layout = PromptLayout(steps=a.prompt_steps, state_every=a.state_every)
    collect_from(a.source, runs[:-1], root / "data-train", a.copies, 0, layout)
    collect_from(a.source, runs[-1:], root / "data-heldout", a.heldout_copies, 1, layout)
    collect_from(a.source, runs[:-1], root / "data-seen", 1, 2, layout)
    collect_s = time.perf_counter() - t0
    overrides = dict(kv.split("=", 1) for kv in a.set)
    run = train_or_reuse(root, overrides)
    model = load_make_an_agent(str(run.path))
    seen = correlation(model, root / "data-seen", a.env, a.episodes)
    roundtrip = autoencoder_roundtrip(model, root / "data-train", a.env, a.episodes)
    prompts = read_prompts(root / "data-heldout", model.spec, model.layout)
    k = len(prompts["prompt_obs"])
    thetas, which = model.generate(prompts, k, seed=0)
    gen_returns = evaluate(model, thetas, a.env, a.episodes, seed=10)
    rho = spearman(prompts["returns"][which], gen_returns)
    # the generator can only give qualities its data holds: the same over prompts no better than its best record
    from policygen.buffers.policy_dataset import PolicyDataset
    train_best = float(PolicyDataset.open(root / "data-train").load()[0]["returns"].max())
    inside = prompts["returns"][which] <= train_best
    rho_inside = spearman(prompts["returns"][which][inside], gen_returns[inside])
    sampled = {}
    if a.samples > 1:  # one draw per prompt is noisy: the mean return of several draws is what the prompt asks for
        sampled = {"heldout": mean_of_samples(model, prompts, a.env, a.episodes, a.samples),
                   "seen_checkpoints": mean_of_samples(model, read_prompts(root / "data-seen", model.spec,
                                                                           model.layout),
                                                       a.env, a.episodes, a.samples)}
    timing = time_generation(model, prompts, root)
    result = {
        "date": datetime.fromtimestamp(t_start, UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "commit": git_commit(), "load_average_start": load0, "load_average_end": os.getloadavg(),
        "env_id": a.env, "source": a.source, "heldout_seed": a.heldout_seed, "train_seeds": seeds,
        "policy": model.spec.describe(), "params": model.spec.num_params, "prompt_layout": asdict(layout),
        "train_records": run.summary["records"], "heldout_prompts": k, "episodes_per_policy": a.episodes,
        "spearman_prompt_vs_generated": rho,
        "training_best_return": train_best, "prompts_within_training_range": int(inside.sum()),
        "spearman_within_training_range": rho_inside,
        "mean_abs_error": float(np.mean(np.abs(prompts["returns"][which] - gen_returns))),
        "prompt_return_range": [float(prompts["returns"].min()), float(prompts["returns"].max())],
        "source_wall_s": source_s, "collect_wall_s": collect_s, "stages": run.summary["stages"],
        "stages_wall_s": run.summary["wall_s"], **timing,
        "pairs": [[float(prompts["returns"][w]), float(g)] for w, g in zip(which, gen_returns, strict=True)],
        "seen_checkpoints": seen, "autoencoder_roundtrip": roundtrip, "samples_per_prompt": a.samples,
        "mean_of_samples": sampled,
        "command": " ".join(sys.argv),
    }
    write(result, Path(a.out))


def correlation(model, prompt_dir: Path, env: str, episodes: int) -> dict:
    """Prompts from the training runs' checkpoints, but fresh episodes and fresh noisy copies."""
    prompts = read_prompts(prompt_dir, model.spec, model.layout)
    thetas, which = model.generate(prompts, len(prompts["prompt_obs"]), seed=0)
    gen = evaluate(model, thetas, env, episodes, seed=10)
    rets = prompts["returns"][which]
    return {"prompts": len(rets), "spearman_prompt_vs_generated": spearman(rets, gen),
            "mean_abs_error": float(np.mean(np.abs(rets - gen))),
            "prompt_return_range": [float(rets.min()), float(rets.max())],
            "pairs": [[float(r), float(g)] for r, g in zip(rets, gen, strict=True)]}


def mean_of_samples(model, prompts: dict, env: str, episodes: int, samples: int) -> dict:
    """``samples`` generated policies per prompt (their own draws, seed 100); Spearman between the prompt's
    return and the mean return of its policies, and the spread of the draws around that mean."""
    k = len(prompts["prompt_obs"])
    thetas, which = model.generate(prompts, k * samples, seed=100)
    gen = evaluate(model, thetas, env, episodes, seed=20)
    per_prompt = np.stack([gen[which == i] for i in range(k)])  # (k, samples)
    mean = per_prompt.mean(axis=1)
    rets = prompts["returns"]
    single = [spearman(rets, per_prompt[:, j]) for j in range(samples)]
    return {"prompts": k, "samples": samples, "spearman_prompt_vs_mean": spearman(rets, mean),
            "mean_abs_error_of_mean": float(np.mean(np.abs(rets - mean))),
            "spearman_single_draw_each": single,
            "draw_std_mean": float(per_prompt.std(axis=1).mean())}


def autoencoder_roundtrip(model, data_dir: Path, env: str, episodes: int) -> dict:
    """Return of 40 training records (the 20 best, 20 at random) before and after encode -> decode."""
    from policygen.algorithms.make_an_agent.train import prepare
    from policygen.buffers.policy_dataset import PolicyDataset

    d = prepare(PolicyDataset.open(data_dir))
    rng = np.random.default_rng(0)
    idx = np.concatenate([np.argsort(-d["returns"])[:20], rng.choice(len(d["returns"]), 20, replace=False)])
    thetas = d["thetas"][idx]
    with torch.no_grad():
        decoded = model.ae.decode(model.ae.encode(thetas))
    before, after = evaluate(model, thetas, env, episodes, 10), evaluate(model, decoded, env, episodes, 10)
    return {"records": len(idx), "spearman": spearman(before, after),
            "mean_abs_error": float(np.mean(np.abs(before - after))), "mean_before": float(before.mean()),
            "mean_after": float(after.mean()),
            "relative_param_error": float(((decoded - thetas).norm(dim=1) / thetas.norm(dim=1)).mean())}


def time_generation(model, prompts, root: Path) -> dict:
    t0 = time.perf_counter()
    model.generate(prompts, 100, seed=1)
    gen100 = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate_policies(str(root / "maa"), str(root / "data-heldout"), 100, str(root / "gen100"), seed=1, force=True)
    return {"generate_decode_100_s": gen100, "generate_100_files_s_with_model_load": time.perf_counter() - t0}


def _layout_text(layout: dict) -> str:
    return (f"the opening {layout['steps']} steps (every action, every {layout['state_every']}th state) and "
            f"the last {layout['outcome_states']} states")


def _span(xs: list[float]) -> str:
    return f"{min(xs):.3f}..{max(xs):.3f}"


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = sorted(result["pairs"])
    seen, rt = result["seen_checkpoints"], result["autoencoder_roundtrip"]
    source_wall = result.get("source_wall_s", result.get("ars_wall_s"))  # older result files: ars_wall_s
    stage_times = ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in result["stages"].items())
    md = [f"# Make-An-Agent, {result['env_id']}: prompt quality -> generated quality", "",
          f"{result['date']}, {result['machine']}, commit {result['commit']}, load average "
          f"{result['load_average_start'][0]:.1f} at start, {result['load_average_end'][0]:.1f} at end.", "",
          f"`{result['command']}`", "",
          f"- policy {result['policy']} ({result['params']} parameters); {result['train_records']} training records; "
          f"{result['heldout_prompts']} held-out prompts (from {result.get('source', 'ars').upper()} seed "
          f"{result['heldout_seed']}, a run never seen in training), one policy each, "
          f"{result['episodes_per_policy']} episodes; prompt: "
          f"{_layout_text(result.get('prompt_layout', {'steps': 60, 'state_every': 3, 'outcome_states': 3}))}",
          f"- **Spearman(prompt return, generated return) = {result['spearman_prompt_vs_generated']:.3f}** "
          f"(target >= 0.8); mean |error| {result['mean_abs_error']:.0f} over prompt returns "
          f"{result['prompt_return_range'][0]:.0f}..{result['prompt_return_range'][1]:.0f}"
          + (f"; over the {result['prompts_within_training_range']} prompts no better than the best training "
             f"record ({result['training_best_return']:.0f}): {result['spearman_within_training_range']:.3f}"
             if "spearman_within_training_range" in result else ""),
          f"- prompts from the training runs' checkpoints (fresh episodes, fresh noisy copies; "
          f"{seen['prompts']} prompts, returns {seen['prompt_return_range'][0]:.0f}.."
          f"{seen['prompt_return_range'][1]:.0f}): Spearman **{seen['spearman_prompt_vs_generated']:.3f}**, "
          f"mean |error| {seen['mean_abs_error']:.0f}",
          *([f"- {result['samples_per_prompt']} policies per prompt (seed 100), Spearman(prompt return, mean return of "
              f"its policies): held out **{m['heldout']['spearman_prompt_vs_mean']:.3f}**, seen checkpoints "
              f"**{m['seen_checkpoints']['spearman_prompt_vs_mean']:.3f}**; one draw per prompt, each of the "
              f"{result['samples_per_prompt']}: held out {_span(m['heldout']['spearman_single_draw_each'])}, seen "
              f"{_span(m['seen_checkpoints']['spearman_single_draw_each'])}; mean std of a prompt's draws "
              f"{m['heldout']['draw_std_mean']:.0f} (held out), {m['seen_checkpoints']['draw_std_mean']:.0f} (seen)"]
            if (m := result.get("mean_of_samples")) else []),
          f"- autoencoder round trip of 40 training records (20 best, 20 random): mean return "
          f"{rt['mean_before']:.0f} -> {rt['mean_after']:.0f}, Spearman {rt['spearman']:.3f}, mean |error| "
          f"{rt['mean_abs_error']:.0f}, relative parameter error {rt['relative_param_error']:.3f}",
          f"- generate + decode 100 policies: **{result['generate_decode_100_s']:.2f} s** (model loaded); "
          f"with loading the run and writing 100 files: {result['generate_100_files_s_with_model_load']:.2f} s",
          f"- wall: {result.get('source', 'ars').upper()} runs {source_wall:.0f} s (0 if they existed), "
          f"collect {result['collect_wall_s']:.0f} s, "
          f"stages {result['stages_wall_s']:.0f} s "
          f"({stage_times})", "",
          "Held-out prompts:", "", "| prompt return | generated return |", "|---:|---:|"]
    md += [f"| {p:.1f} | {g:.1f} |" for p, g in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md[:12]))


if __name__ == "__main__":
    main()
