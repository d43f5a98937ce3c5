"""``policygen collect``: a policy data set from the checkpoints of training runs.

Every checkpoint of a run (its snapshots from ``train --snapshots N`` and its latest checkpoint) gives
one shard: the checkpoint's evaluation policy and ``copies`` noisy copies of it (Gaussian noise of
``noise * (j / copies) * rms(theta)`` for copy j, so quality spreads from the checkpoint's down to
near-random), each run for one recorded episode through the batched engine. Early, middle and late
checkpoints plus the noise give records of varied quality on purpose.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.loading import load_run
from policygen.buffers.policy_dataset import PolicyDataset, PromptLayout, prompt_from_episode, with_biases
from policygen.envs.stats import RunningStats
from policygen.errors import PolicygenError
from policygen.rollout.engine import RolloutEngine


@dataclass
class Source:
    """One checkpoint to collect from: where it is (for messages) and how to load its policy."""

    where: str
    run_dir: str
    snapshot: str | None


def source_key(*arrays: np.ndarray) -> str:
    """A checkpoint's key in a data set: a hash of its policy (parameters, observation statistics), not of its
    path, so a run or data set that was moved or copied is recognised and a rerun never adds it twice."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return "policy:" + h.hexdigest()[:24]


def checkpoints(run_dirs: list[str]) -> list[Source]:
    """Every snapshot then the latest checkpoint of each run, oldest first."""
    from policygen.runs.rundir import RunDir

    out = []
    for d in run_dirs:
        run = RunDir.open(d)
        if not run.has_checkpoint():
            raise PolicygenError(f"{d}: no checkpoint yet; collect reads runs with checkpoints/latest.safetensors")
        name = str(Path(d).resolve())
        out += [Source(f"{name}#{s}", d, s) for s in run.snapshots()]
        out.append(Source(f"{name}#latest", d, None))
    return out


def collect(run_dirs: list[str], out: str, copies: int = 15, noise: float = 1.0, seed: int = 0,
            layout: PromptLayout | None = None, backend: str = "auto", log=None) -> dict:
    """Append one shard per checkpoint not yet in the data set ``out``; a rerun continues a killed one."""
    if copies < 0 or not noise >= 0:
        raise PolicygenError(f"copies must be >= 0 and noise >= 0, got {copies}, {noise}")
    layout = layout or PromptLayout()
    sources = checkpoints(run_dirs)
    ds, written, skipped = None, 0, 0
    for src in sources:
        loaded = load_run(src.run_dir, src.snapshot)
        policy = loaded.policy()
        spec, theta = with_biases(policy.spec, policy.theta.numpy()[None].astype(np.float32))
        env_id = loaded.run_config.env_id
        ds = ds or PolicyDataset.create_or_open(out, spec, layout, outcome=outcome_rule(env_id))
        ds.check_spec(spec, f"{src.run_dir} ({loaded.run.config['algorithm']})")
        key = source_key(theta, policy.obs_mean, policy.obs_std)
        if key in (done := ds.sources()):
            skipped += 1
            continue
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        thetas = noisy_copies(theta[0], copies, noise, rng)
        written += _roll_and_append(ds, env_id, spec, thetas, (policy.obs_mean, policy.obs_std), layout, rng,
                                    backend, src.where, {"source": key, "checkpoint": src.where,
                                                         "env_steps": loaded.env_steps}, log,
                                    f" ({len(done) + 1} of {len(sources)} checkpoints)")
    return {"out": out, "checkpoints": len(sources), "skipped": skipped, "records_written": written}


def noisy_copies(theta: np.ndarray, copies: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``theta`` then ``copies`` copies with noise ``noise * j / copies * rms(theta)``, j = 1..copies."""
    rms = float(np.sqrt(np.mean(theta.astype(np.float64) ** 2))) or 1.0
    scales = noise * np.arange(0, copies + 1) / max(copies, 1) * rms
    eps = rng.standard_normal((copies + 1, theta.size))
    return (theta[None] + scales[:, None] * eps).astype(np.float32)


def rollout_records(env_id: str, spec, thetas: np.ndarray, obs_mean: np.ndarray, obs_std: np.ndarray,
                    layout: PromptLayout, seed: int, backend: str = "auto",
                    env_kwargs: dict | None = None) -> tuple[dict, list[dict]]:
    """One recorded episode of each of ``thetas (n, P)``; the records of those that did not fail."""
    engine = RolloutEngine(env_id, spec, num_envs=min(len(thetas), 16), backend=backend, seed=seed,
                           env_kwargs=env_kwargs, tolerate_faults=True)
    engine.obs_stats = RunningStats.from_mean_std(obs_mean, obs_std)
    try:
        res = engine.evaluate(torch.from_numpy(thetas), episodes=1, record=True, count_steps=False)
    finally:
        engine.close()
    keep = np.flatnonzero(~res.failed)
    prompts = [_prompt(layout, res.trajectories[i]) for i in keep]
    records = {k: np.stack([p[k] for p in prompts]) for k in prompts[0]} if prompts else {}
    n = len(keep)
    records.update(theta=thetas[keep], obs_mean=np.repeat(obs_mean[None], n, 0).astype(np.float64),
                   obs_std=np.repeat(obs_std[None], n, 0).astype(np.float64), returns=res.returns[keep])
    return records, [{"copy": int(i), "length": int(res.lengths[i])} for i in keep]


def _prompt(layout: PromptLayout, traj: dict) -> dict[str, np.ndarray]:
    """A recorded episode as a record's prompt; with a success signal, the outcome states start at the
    first state reached after a step reporting success (the paper's states after the first success)."""
    step_success = traj.get("success")
    if step_success is None:
        return prompt_from_episode(layout, traj["obs"], traj["actions"])
    # success[t] is reported after action t, so it describes state t+1 (the last one is never recorded)
    state_success = np.concatenate([[False], step_success[:-1]])
    return prompt_from_episode(layout, traj["obs"], traj["actions"], state_success, bool(step_success.any()))


def outcome_rule(env_id: str, env_kwargs: dict | None = None) -> str:
    """How the data set's outcome states are chosen for ``env_id`` (dataset.json ``outcome``)."""
    from policygen.envs.make import env_info

    return "first_success" if env_info(env_id, env_kwargs).success_signal else "episode_end"


def sb3_sac_actor(path: str, env_id: str):
    """The deterministic actor of a Stable-Baselines3 SAC ``.zip`` as ``(spec, theta (P,))``, read pickle-free.

    Only ``policy.pth`` is read, with ``torch.load(weights_only=True)`` (the zip's ``data`` entry is
    cloudpickle and is never opened). The actor is ``latent_pi`` (Linear + activation layers) then ``mu``;
    SAC squashes with tanh and scales to the (symmetric) action bounds, so the flat policy is
    ``tanh(mu(latent_pi(obs))) * action_high`` on raw observations. SB3's default ReLU activation is assumed
    (``policy_kwargs`` sit in the pickled part).
    """
    import io
    import zipfile

    from policygen.envs.make import env_info
    from policygen.policies.flat_mlp import MLPSpec

    try:
        with zipfile.ZipFile(path) as z:
            state = torch.load(io.BytesIO(z.read("policy.pth")), map_location="cpu", weights_only=True)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, ValueError) as e:
        raise PolicygenError(f"{path}: not a Stable-Baselines3 model zip with policy.pth ({e})") from None
    hidden = sorted((k for k in state if k.startswith("actor.latent_pi.") and k.endswith(".weight")),
                    key=lambda k: int(k.split(".")[2]))
    if not hidden or "actor.mu.weight" not in state:
        raise PolicygenError(f"{path}: no SAC actor in policy.pth (expected actor.latent_pi.* and actor.mu.*)")
    layers = [*hidden, "actor.mu.weight"]
    info = env_info(env_id)
    w0 = state[layers[0]]
    spec = MLPSpec(int(w0.shape[1]), int(state["actor.mu.weight"].shape[0]),
                   tuple(int(state[k].shape[0]) for k in hidden), "relu", "tanh", info.action_high)
    parts = []
    for k in layers:
        parts += [state[k].reshape(-1), state[k.replace(".weight", ".bias")].reshape(-1)]
    theta = torch.cat(parts).float()
    spec.check_thetas(theta)
    return spec, theta


def sb3_zips(paths: list[str], env_id: str | None) -> list[tuple[str, str]]:
    """``(zip, env id)`` for each source: a ``.zip`` as given (on ``env_id``), or a policygen SAC run directory's
    snapshots (``train sac --snapshots N``) then its latest model, on the run's own env."""
    from policygen.algorithms.sb3 import SB3_DIR, SNAPSHOT_DIR
    from policygen.runs.rundir import RunDir

    out = []
    for p in paths:
        if not Path(p).is_dir():
            if not env_id:
                raise PolicygenError(f"{p}: a bare SAC .zip needs --env ENV_ID (the task it was trained on)")
            out.append((p, env_id))
            continue
        run = RunDir.open(p)
        algo, run_env = run.config.get("algorithm"), run.config.get("run", {}).get("env_id")
        if algo != "sac":
            raise PolicygenError(f"{p}: a {algo} run; --sb3-sac reads SAC runs (train sac) or SAC .zip files")
        if env_id and env_id != run_env:
            raise PolicygenError(f"{p}: trained on {run_env}, not --env {env_id}")
        latest = sorted((Path(p) / SB3_DIR).glob("model-*.zip"))[-1:]
        zips = sorted((Path(p) / SNAPSHOT_DIR).glob("model-*.zip")) + latest
        if not latest:
            raise PolicygenError(f"{p}: no SAC checkpoint yet ({SB3_DIR}/model-*.zip)")
        out += [(str(z), run_env) for z in zips]
    return out


def collect_sb3(sources: list[str], env_id: str | None, out: str, copies: int = 15, noise: float = 0.5,
                seed: int = 0, layout: PromptLayout | None = None, backend: str = "auto", log=None) -> dict:
    """Like ``collect``, with SB3 SAC checkpoints as the sources (``sb3_zips``); no observation normalisation."""
    layout = layout or PromptLayout()
    written, skipped = 0, 0
    zips = sb3_zips(sources, env_id)
    for z, env_id in zips:
        spec, theta = sb3_sac_actor(z, env_id)
        ds = PolicyDataset.create_or_open(out, spec, layout, outcome=outcome_rule(env_id))
        key = source_key(theta.numpy())
        if key in ds.sources():
            skipped += 1
            continue
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        thetas = noisy_copies(theta.numpy(), copies, noise, rng)
        zeros, ones = np.zeros(spec.obs_dim), np.ones(spec.obs_dim)
        written += _roll_and_append(ds, env_id, spec, thetas, (zeros, ones), layout, rng, backend, str(z),
                                    {"source": key, "checkpoint": str(Path(z).resolve())}, log)
    return {"out": out, "checkpoints": len(zips), "skipped": skipped, "records_written": written}


def _roll_and_append(ds, env_id, spec, thetas, stats, layout, rng, backend, label, fields, log, where="") -> int:
    """Roll out ``thetas`` from one source, append its records to ``ds``; returns how many were written."""
    records, info = rollout_records(env_id, spec, thetas, stats[0], stats[1], layout,
                                    int(rng.integers(2**31 - 1)), backend)
    if not info:
        raise PolicygenError(f"{label}: every episode failed in {env_id}; nothing to collect from it")
    for r in info:
        r.update(task=env_id, **fields)
    ds.append(records, info)
    if log:
        log(f"[collect] {label}: {len(info)} records, returns {np.min(records['returns']):.1f}.."
            f"{np.max(records['returns']):.1f}{where}")
    return len(info)
