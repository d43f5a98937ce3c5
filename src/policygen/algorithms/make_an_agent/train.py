"""``policygen train make-an-agent --dataset DIR --out RUN``: the three stages, in order, each on its own.

1. parameter autoencoder on the data set's parameter vectors (all folded onto one set of observation
   statistics, so every vector means the same policy under the same normalisation);
2. behaviour embedding (InfoNCE) on the records' prompt trajectories and outcome states;
3. latent diffusion on (latent of a record's parameters, embedding of its prompt).

Each stage is checkpointed to ``RUN/stages/NAME.safetensors`` every ``checkpoint_every`` steps (networks,
optimiser, random generator, loss history); rerunning the command (or ``train --resume RUN``) skips finished
stages and continues an interrupted one from its last checkpoint, with the same numbers.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.base import make_config
from policygen.algorithms.make_an_agent.model import (
    MakeAnAgent,
    MakeAnAgentConfig,
    build_networks,
    prompt_features,
)
from policygen.buffers.policy_dataset import PolicyDataset, PromptLayout, rebase_thetas
from policygen.errors import PolicygenError
from policygen.generators.diffusion.autoencoder import layer_chunks
from policygen.generators.diffusion.denoiser import ddim_scheduler, diffusion_loss
from policygen.policies.flat_mlp import MLPSpec
from policygen.runs.files import load_optimizer_state, load_state, optimizer_state, save_state
from policygen.runs.rundir import RunDir

ALGORITHM = "make-an-agent"
STAGE_KIND = "make-an-agent-stage"
STAGES = ("autoencoder", "embedding", "diffusion")


def prepare(ds: PolicyDataset) -> dict:
    """The data set as training tensors: folded thetas, prompt features, and the reference statistics."""
    rec, info = ds.load()
    ref_mean, ref_std = rec["obs_mean"].mean(0), rec["obs_std"].mean(0)
    thetas = rebase_thetas(ds.spec, rec["theta"], rec["obs_mean"], rec["obs_std"], ref_mean, ref_std)
    traj, out = prompt_features(ds.spec, ref_mean, ref_std, rec["prompt_obs"], rec["prompt_actions"],
                                rec["outcome_obs"])
    norm = lambda a: np.linalg.norm(np.asarray(a, np.float64), axis=1)  # noqa: E731
    inflation = float(np.median(norm(thetas) / np.maximum(norm(rec["theta"]), 1e-12)))
    return {"thetas": torch.from_numpy(thetas), "traj": traj, "outcome": out, "returns": rec["returns"],
            "ref_mean": ref_mean, "ref_std": ref_std, "tasks": sorted({r["task"] for r in info}), "n": len(info),
            "fold_inflation": inflation}


FOLD_INFLATION_WARN = 5.0
"""Folding every record's observation statistics into the shared reference (``rebase_thetas``) is exact, but
when it multiplies the weights' norm by more than this (runs whose statistics differ a lot, e.g. MetaWorld's
near-constant coordinates under per-run normalisation: ~20x), the autoencoder's small relative errors become
large behaviour errors."""


def _batch(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    return torch.randperm(n, generator=gen)[:size]


def train_stage(path: Path, model: torch.nn.Module, loss_fn, steps: int, lr: float, cfg: MakeAnAgentConfig,
                seed: int, log=None, run: RunDir | None = None) -> dict:
    """AdamW on ``loss_fn(gen)`` for ``steps`` steps, resumable from the stage file ``path``; with ``run``, a
    stage file saved under other settings than the run's config.json now holds is refused."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    step, losses, wall = 0, [], 0.0
    if path.exists():
        st = load_state(path, STAGE_KIND)
        if run is not None:
            run.check_resumable(st)
        try:
            model.load_state_dict(st["model"])
            load_optimizer_state(opt, st["opt"])
            gen.set_state(st["gen"])
            step, losses, wall = int(st["step"]), list(st["losses"]), float(st["wall_s"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise PolicygenError(f"{path}: stage checkpoint does not fit this run ({str(e)[:160]})") from None
    t0, acc = time.perf_counter() - wall, []
    model.train()
    while step < steps:
        loss = loss_fn(gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc.append(float(loss.detach()))
        step += 1
        if step % cfg.checkpoint_every == 0 or step == steps:
            losses.append([step, float(np.mean(acc))])
            acc, wall = [], time.perf_counter() - t0
            state = {"model": model.state_dict(), "opt": optimizer_state(opt), "gen": gen.get_state(),
                     "step": step, "losses": losses, "wall_s": wall}
            save_state(path, run.stamped(state) if run is not None else state, STAGE_KIND)
            if log:
                log(f"[make-an-agent] {path.stem} step {step}/{steps} loss {losses[-1][1]:.4g} ({wall:.0f} s)")
    model.eval()
    return {"steps": step, "final_loss": losses[-1][1] if losses else None, "wall_s": wall}


def _latents(ae, thetas: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ae.encode(thetas).reshape(len(thetas), -1)


def run_stages(run: RunDir, data: dict, cfg: MakeAnAgentConfig, spec: MLPSpec, layout: PromptLayout,
               seed: int, log=None) -> dict:
    """Train (or finish) the three stages; returns each stage's summary."""
    with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed, not the process's RNG
        torch.manual_seed(seed)
        ae, emb, den = build_networks(cfg, run.config["chunks"], spec, layout)
    ae.fit_normalisation(data["thetas"])
    stages, n, b = run.path / "stages", data["n"], cfg.batch
    out = {"autoencoder": train_stage(stages / "autoencoder.safetensors", ae,
                                      lambda g: ae.loss(data["thetas"][_batch(g, n, b)], g),
                                      cfg.ae_steps, cfg.ae_lr, cfg, seed, log, run)}

    ret = torch.as_tensor(np.asarray(data["returns"], np.float64), dtype=torch.float32)
    ret = (ret - ret.mean()) / ret.std().clamp_min(1e-8) if n > 1 else ret * 0

    def emb_loss(g):
        i = _batch(g, n, b)
        return emb.loss(data["traj"][i], data["outcome"][i], ret[i] if cfg.emb_return_weight > 0 else None,
                        cfg.emb_return_weight)

    out["embedding"] = train_stage(stages / "embedding.safetensors", emb, emb_loss, cfg.emb_steps, cfg.emb_lr,
                                   cfg, seed + 1, log, run)
    z = _latents(ae, data["thetas"])
    z_mean, z_std = z.mean(0), z.std(0).clamp_min(1e-4)
    zn = (z - z_mean) / z_std
    with torch.no_grad():
        cond = emb.condition(data["traj"], data["outcome"])
    sched = ddim_scheduler(cfg.train_timesteps)

    def diff_loss(g):
        i = _batch(g, n, b)
        c = cond[i]
        if cfg.cond_noise > 0:
            c = c + cfg.cond_noise * torch.randn(c.shape, generator=g)
        return diffusion_loss(den, sched, zn[i], c, g)

    den.register_buffer("latent_mean", z_mean)
    den.register_buffer("latent_std", z_std)
    out["diffusion"] = train_stage(stages / "diffusion.safetensors", den, diff_loss, cfg.diff_steps, cfg.diff_lr,
                                   cfg, seed + 2, log, run)
    return out


def train_make_an_agent(dataset: str | None, out: str, overrides: dict[str, str] | None = None, seed: int = 0,
                        force: bool = False, log=None, torch_threads: int = 1) -> RunDir:
    """Start the run ``out`` (or continue it, if it is a make-an-agent run of the same data set).

    ``torch_threads`` 1 by default, as every training run here: two threads on a shared 2-core machine made
    these small networks' steps ~10x slower."""
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    path = Path(out)
    if (path / "config.json").exists() and not force:
        run = RunDir.open(path, lock=True)
        if run.config.get("algorithm") != ALGORITHM:
            run.unlock()
            raise PolicygenError(f"{out} is a {run.config.get('algorithm')} run; choose another --out or --force")
        if run.status == "complete":
            run.unlock()
            raise PolicygenError(f"{out} is already complete (summary.json written); nothing to resume "
                                 f"(--force trains it again)")
    else:
        if dataset is None:
            raise PolicygenError("train make-an-agent needs --dataset DIR (a policygen collect data set)")
        run = _create(dataset, out, overrides, seed, force)
    try:
        return _finish(run, overrides, dataset, log)
    finally:
        run.unlock()


def _create(dataset: str, out: str, overrides: dict[str, str] | None, seed: int, force: bool) -> RunDir:
    from policygen.algorithms.trainer import git_commit, versions

    ds = PolicyDataset.open(dataset)
    cfg = make_config(MakeAnAgentConfig, None, overrides)
    _, info = ds.load()
    config = {"algorithm": ALGORITHM, "dataset": str(Path(dataset).resolve()), "dataset_records": len(info),
              "seed": seed, "algo": asdict(cfg), "policy": ds.spec.to_dict(), "prompt": asdict(ds.layout),
              "chunks": layer_chunks(ds.spec, cfg.chunk), "env_ids": sorted({r["task"] for r in info}),
              "versions": versions(), "commit": git_commit()}
    run = RunDir.create(out, config, force=force)
    shutil.rmtree(run.path / "stages", ignore_errors=True)  # --force: no stage of an older run is resumed
    return run


def _finish(run: RunDir, overrides: dict[str, str] | None, dataset: str | None, log) -> RunDir:
    cfg_d = run.config
    if overrides and make_config(MakeAnAgentConfig, cfg_d["algo"], overrides) != \
            make_config(MakeAnAgentConfig, cfg_d["algo"], None):
        raise PolicygenError(f"{run.path} was started with other settings; --set applies to a new run (--force)")
    if dataset is not None and str(Path(dataset).resolve()) != cfg_d["dataset"]:
        raise PolicygenError(f"{run.path} trains on {cfg_d['dataset']}, not {dataset}; use another --out")
    cfg = make_config(MakeAnAgentConfig, cfg_d["algo"], None)
    ds = PolicyDataset.open(cfg_d["dataset"])
    data = prepare(ds)
    if data["n"] != cfg_d["dataset_records"]:
        raise PolicygenError(f"{cfg_d['dataset']} now holds {data['n']} records, {cfg_d['dataset_records']} when "
                             f"{run.path} started; train a new run on it (--force)")
    if data["fold_inflation"] > FOLD_INFLATION_WARN:
        print(f"[make-an-agent] warning: folding the records' observation statistics into one reference made "
              f"their weights {data['fold_inflation']:.0f}x larger (median); generated policies will be poor. "
              f"Collect from runs without observation normalisation (ARS --set normalize_obs=false) or with "
              f"similar statistics", file=sys.stderr)
    run.set_status("running")
    t0 = time.perf_counter()
    stages = run_stages(run, data, cfg, ds.spec, ds.layout, int(cfg_d["seed"]), log)
    run.write_summary({"algorithm": ALGORITHM, "env_ids": data["tasks"], "env_id": data["tasks"][0],
                       "records": data["n"], "stages": stages, "ref_mean": data["ref_mean"],
                       "ref_std": data["ref_std"], "fold_inflation": data["fold_inflation"],
                       "wall_s": sum(s["wall_s"] for s in stages.values()),
                       "this_call_s": time.perf_counter() - t0, "commit": cfg_d.get("commit")})
    return run


def load_make_an_agent(run_dir: str) -> MakeAnAgent:
    """A finished make-an-agent run's networks, ready to generate."""
    run = RunDir.open(run_dir)
    c = run.config
    if c.get("algorithm") != ALGORITHM:
        raise PolicygenError(f"{run_dir} is a {c.get('algorithm')} run, not a make-an-agent run")
    if run.status != "complete":
        raise PolicygenError(f"{run_dir}: training is not finished; rerun policygen train make-an-agent --out "
                             f"{run_dir} to complete it")
    try:
        cfg = make_config(MakeAnAgentConfig, c["algo"], None)
        spec, layout = MLPSpec.from_dict(c["policy"]), PromptLayout(**c["prompt"])
        nets = build_networks(cfg, c["chunks"], spec, layout)
        nets[2].register_buffer("latent_mean", torch.zeros(len(c["chunks"]) * cfg.latent_dim))
        nets[2].register_buffer("latent_std", torch.ones(len(c["chunks"]) * cfg.latent_dim))
        for name, net in zip(STAGES, nets, strict=True):
            net.load_state_dict(load_state(run.path / "stages" / f"{name}.safetensors", STAGE_KIND)["model"])
        s = run.summary
        ref_mean, ref_std = np.asarray(s["ref_mean"], np.float64), np.asarray(s["ref_std"], np.float64)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise PolicygenError(f"{run_dir}: damaged make-an-agent run ({type(e).__name__}: {str(e)[:160]})") from None
    return MakeAnAgent(cfg, spec, layout, *nets, nets[2].latent_mean, nets[2].latent_std, ref_mean, ref_std)
