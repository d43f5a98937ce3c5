"""``policygen report-agent``: a Make-An-Agent run's success per task, beside its baselines.

Per task (one prompt file each, the task named by the file's ``env_id``) and per prompt-noise level:

- **generated**: ``n`` policies, policy i from prompt ``i mod K``, each run ``episodes`` episodes;
- **behaviour cloning**: ``bc`` policies (seeds 0..bc-1) cloned from the same (noisy) prompts;
- **training data** (seen tasks only, noise-free): the ``data_candidates`` records of that task with the
  best recorded (success, return), re-run ``episodes`` episodes each.

For each group: ``best`` and ``top5`` success rate (the best one, the mean of the 5 best), ``full_share``
(share of policies succeeding in every episode), ``mean``. Seen = the task is in the run's data set.
Prompt noise (robustness): Gaussian, ``level * std`` per state dimension (std of the run's reference
observation statistics) on the prompt and outcome states, ``level * action_high`` on the actions (then
clipped to the bounds); one fixed draw per level and task (seeded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.bc import BCConfig, bc_pairs, train_bc
from policygen.envs.make import env_info
from policygen.envs.stats import RunningStats
from policygen.errors import PolicygenError
from policygen.runs.files import _metadata, atomic_write_bytes, atomic_write_json


def success_figures(rates: np.ndarray) -> dict:
    """best, top-5 mean, share fully succeeding and mean of per-policy success rates ``(B,)``."""
    r = np.sort(np.asarray(rates, np.float64))[::-1]
    if len(r) == 0:
        raise PolicygenError("no policies to summarise")
    return {"best": float(r[0]), "top5": float(r[:5].mean()), "full_share": float(np.mean(r >= 1.0)),
            "mean": float(r.mean()), "n": int(len(r))}


def success_rates(env_id: str, spec, thetas: torch.Tensor, mean: np.ndarray, std: np.ndarray, episodes: int,
                  seed: int, backend: str = "auto", num_envs: int = 8) -> np.ndarray:
    """Success rate over ``episodes`` episodes of each of ``thetas (B, P)`` (all under one normalisation)."""
    from policygen.rollout.engine import RolloutEngine

    engine = RolloutEngine(env_id, spec, num_envs=num_envs, backend=backend, seed=seed, num_threads=1)
    engine.obs_stats = RunningStats.from_mean_std(mean, std)
    try:
        res = engine.evaluate(torch.as_tensor(thetas, dtype=torch.float32), episodes=episodes, count_steps=False)
    finally:
        engine.close()
    if res.successes is None:
        raise PolicygenError(f"{env_id} reports no success signal (info['success']); report-agent needs one "
                             f"(MetaWorld/<Task>-v3)")
    return res.successes


def noisy_prompts(prompts: dict, level: float, obs_std: np.ndarray, high: np.ndarray, seed: int) -> dict:
    """The prompts with Gaussian noise of ``level`` (see the module docstring); level 0: unchanged."""
    if level == 0:
        return prompts
    rng = np.random.default_rng(seed)
    out = dict(prompts)
    for k in ("prompt_obs", "outcome_obs"):
        out[k] = (prompts[k] + level * obs_std * rng.standard_normal(prompts[k].shape)).astype(np.float32)
    acts = prompts["prompt_actions"] + level * high * rng.standard_normal(prompts["prompt_actions"].shape)
    out["prompt_actions"] = np.clip(acts, -high, high).astype(np.float32)
    return out


def prompt_env(path: str) -> tuple[str, str]:
    """``ENV_ID=FILE`` or a prompt FILE whose metadata names its env: ``(env_id, file)``."""
    if "=" in path:
        env_id, file = path.split("=", 1)
        return env_id, file
    try:
        meta = _metadata(Path(path).read_bytes())
    except FileNotFoundError:
        raise PolicygenError(f"{path}: no such prompt file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PolicygenError(f"{path}: not a policygen prompt file ({e})") from None
    if not meta.get("env_id"):
        raise PolicygenError(f"{path}: the prompt file names no env; pass ENV_ID={path}")
    return meta["env_id"], path


def best_data_thetas(dataset, task: str, model, k: int) -> torch.Tensor | None:
    """The ``k`` records of ``task`` with the best (success, return), folded onto the run's normalisation."""
    from policygen.buffers.policy_dataset import rebase_thetas

    rec, info = dataset.load()
    idx = np.array([i for i, r in enumerate(info) if r["task"] == task])
    if len(idx) == 0:
        return None
    order = np.lexsort((-rec["returns"][idx], -rec["success"][idx].astype(np.float64)))[:k]
    sel = idx[order]
    th = rebase_thetas(dataset.spec, rec["theta"][sel], rec["obs_mean"][sel], rec["obs_std"][sel],
                       model.ref_mean, model.ref_std)
    return torch.from_numpy(th)


def agent_report(run_dir: str, prompt_files: list[str], n: int = 20, episodes: int = 5,
                 noise: tuple[float, ...] = (0.0,), bc: int = 5, data_candidates: int = 20,
                 max_prompts: int | None = None, seed: int = 0, backend: str = "auto", log=None,
                 bc_cfg: BCConfig | None = None) -> dict:
    """The report as a dict (see the module docstring); ``noise`` levels include 0 for the clean figures."""
    from policygen.algorithms.make_an_agent.generate import read_prompts
    from policygen.algorithms.make_an_agent.train import load_make_an_agent
    from policygen.buffers.policy_dataset import PolicyDataset

    if n < 1 or episodes < 1 or bc < 0 or data_candidates < 0:
        raise PolicygenError(f"need --n >= 1, --episodes >= 1, --bc >= 0, --data-candidates >= 0; got {n}, "
                             f"{episodes}, {bc}, {data_candidates}")
    if any(not np.isfinite(x) or x < 0 for x in noise):
        raise PolicygenError(f"--noise levels must be finite and >= 0, got {list(noise)}")
    model = load_make_an_agent(run_dir)
    config = json.loads((Path(run_dir) / "config.json").read_text())
    seen = set(config["env_ids"])
    dataset = PolicyDataset.open(config["dataset"]) if data_candidates and Path(config["dataset"]).is_dir() else None
    high = np.asarray(model.spec.action_high, np.float64)
    tasks = {}
    for path in prompt_files:
        env_id, file = prompt_env(path)
        info = env_info(env_id)
        if not info.success_signal:
            raise PolicygenError(f"{env_id} has no success signal; report-agent reports success rates (MetaWorld)")
        prompts = read_prompts(file, model.spec, model.layout)
        if max_prompts:
            prompts = {k: v[:max_prompts] for k, v in prompts.items()}
        row = {"env_id": env_id, "prompt_file": file, "seen": env_id in seen,
               "prompts": int(len(prompts["prompt_obs"])), "noise": {},
               "prompt_success": float(np.mean(prompts["success"])) if "success" in prompts else None}

        def ev(th, mean, std, env_id=env_id):
            return success_rates(env_id, model.spec, th, mean, std, episodes, seed, backend)

        if dataset is not None and env_id in seen:
            th = best_data_thetas(dataset, env_id, model, data_candidates)
            row["training_data"] = success_figures(ev(th, model.ref_mean, model.ref_std))
        for level in noise:
            p = noisy_prompts(prompts, level, model.ref_std, high, seed + 1)
            thetas, _ = model.generate(p, n, seed)
            cell = {"generated": success_figures(ev(thetas, model.ref_mean, model.ref_std))}
            if bc:
                states, actions = bc_pairs(p, model.layout)
                rates = []
                for s in range(bc):
                    pol, _ = train_bc(states, actions, model.spec.action_high, bc_cfg, seed=seed + s)
                    rates.append(success_rates(env_id, pol.spec, pol.theta[None], pol.obs_mean, pol.obs_std,
                                               episodes, seed, backend)[0])
                cell["behaviour_cloning"] = success_figures(np.array(rates))
            row["noise"][f"{level:g}"] = cell
            if log:
                log(f"[report-agent] {env_id} noise {level:g}: generated top5 {cell['generated']['top5']:.2f}"
                    + (f", BC top5 {cell['behaviour_cloning']['top5']:.2f}" if bc else ""))
        tasks[env_id] = row
    return {"run": str(run_dir), "n": n, "episodes": episodes, "bc": bc, "noise": list(noise), "seed": seed,
            "tasks": tasks, "summary": summarise(tasks, noise)}


def summarise(tasks: dict, noise) -> dict:
    """Means over the seen and over the unseen tasks of each figure, per noise level."""
    out = {}
    for group, want in (("seen", True), ("unseen", False)):
        rows = [r for r in tasks.values() if r["seen"] == want]
        if not rows:
            continue
        g = {}
        for level in noise:
            key = f"{level:g}"
            g[key] = {who: {f: float(np.mean([r["noise"][key][who][f] for r in rows])) for f in
                            ("best", "top5", "full_share")}
                      for who in ("generated", "behaviour_cloning") if who in rows[0]["noise"][key]}
        if all("training_data" in r for r in rows):
            g["training_data"] = {f: float(np.mean([r["training_data"][f] for r in rows]))
                                  for f in ("best", "top5", "full_share")}
        out[group] = {"tasks": [r["env_id"] for r in rows], **g}
    return out


def report_markdown(rep: dict) -> str:
    lines = [f"# Make-An-Agent report: {rep['run']}", "",
             f"{rep['n']} generated policies per task and noise level, {rep['episodes']} episodes each; "
             f"behaviour cloning: {rep['bc']} policies from the same prompts.", "",
             "| task | seen | prompts | noise | gen best | gen top-5 | gen full | BC best | BC top-5 | BC full "
             "| data best | data top-5 |", "|" + "---|" * 12]
    f = lambda d, k: "-" if d is None else f"{d[k]:.2f}"  # noqa: E731
    for t, r in rep["tasks"].items():
        for level, c in r["noise"].items():
            bc, data = c.get("behaviour_cloning"), r.get("training_data")
            lines.append(f"| {t} | {'yes' if r['seen'] else 'no'} | {r['prompts']} | {level} | "
                         f"{f(c['generated'], 'best')} | {f(c['generated'], 'top5')} | "
                         f"{f(c['generated'], 'full_share')} | {f(bc, 'best')} | {f(bc, 'top5')} | "
                         f"{f(bc, 'full_share')} | {f(data, 'best')} | {f(data, 'top5')} |")
    return "\n".join(lines) + "\n"


def write_report(rep: dict, out: str) -> dict:
    path = Path(out)
    atomic_write_json(path / "report.json", rep)
    atomic_write_bytes(path / "report.md", report_markdown(rep).encode())
    return {"report": str(path / "report.md"), "json": str(path / "report.json")}
