"""Behaviour prompts in, standalone policy files out (``policygen generate RUN --prompt P --n N --out DIR``).

A prompt file (``.safetensors``, format ``policygen-prompts``) holds K prompts in the data set's layout:
``prompt_obs (K, S, obs)``, ``prompt_actions (K, T, act)``, ``outcome_obs (K, Ko, obs)`` (raw states) and
``returns (K,)`` (the return of the episode each prompt comes from, NaN if unknown); ``policygen prompt``
records one from any policy. A data set folder is a prompt source too (its records' prompts).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save

from policygen.algorithms.make_an_agent.collect import rollout_records
from policygen.algorithms.make_an_agent.train import load_make_an_agent
from policygen.buffers.policy_dataset import PolicyDataset, PromptLayout
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.policies.io import save_policy
from policygen.policies.standalone import Policy
from policygen.runs.files import _metadata, atomic_write_bytes, atomic_write_json

PROMPT_FORMAT = "policygen-prompts"
PROMPT_KEYS = ("prompt_obs", "prompt_actions", "outcome_obs")


def write_prompts(path: str | Path, prompts: dict[str, np.ndarray], layout: PromptLayout, env_id: str) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise PolicygenError(f"{path}: prompt files end in .safetensors")
    arrays = {k: np.ascontiguousarray(prompts[k], dtype=np.float32) for k in PROMPT_KEYS}
    arrays["returns"] = np.asarray(prompts.get("returns", np.full(len(arrays["prompt_obs"]), np.nan)), np.float64)
    if "success" in prompts:  # the prompt episodes' success, when the env has the signal
        arrays["success"] = np.asarray(prompts["success"], np.uint8)
    meta = {"format": PROMPT_FORMAT, "version": "1", "env_id": env_id, "layout": json.dumps(layout.__dict__)}
    atomic_write_bytes(path, np_save(arrays, metadata=meta))
    return path


def read_prompts(path: str | Path, spec: MLPSpec, layout: PromptLayout) -> dict[str, np.ndarray]:
    """Prompts from a prompt file or a data set folder, checked against the run's policy spec and layout."""
    path = Path(path)
    if path.is_dir():
        rec, _ = PolicyDataset.open(path).load()
        prompts = {k: rec[k] for k in (*PROMPT_KEYS, "returns", "success")}
    else:
        try:
            data = path.read_bytes()
            prompts, meta = np_load(data), _metadata(data)
        except FileNotFoundError:
            raise PolicygenError(f"{path}: no such prompt file or data set folder") from None
        except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PolicygenError(f"{path}: not a policygen prompt file ({str(e).splitlines()[0][:120]})") from None
        if meta.get("format") != PROMPT_FORMAT:
            raise PolicygenError(f"{path}: a safetensors file, but not a policygen prompt file")
    check_prompts(str(path), prompts, spec, layout)
    return prompts


def check_prompts(what: str, p: dict, spec: MLPSpec, layout: PromptLayout) -> None:
    """One clear line for prompts that do not fit: missing parts, empty, wrong sizes, NaN or inf."""
    missing = [k for k in PROMPT_KEYS if k not in p]
    if missing:
        raise PolicygenError(f"{what}: prompt lacks {missing}")
    k = len(p["prompt_obs"])
    if k == 0:
        raise PolicygenError(f"{what}: holds no prompt trajectory (empty)")
    want = {"prompt_obs": (k, layout.n_states, spec.obs_dim), "prompt_actions": (k, layout.steps, spec.act_dim),
            "outcome_obs": (k, layout.outcome_states, spec.obs_dim)}
    for key, shape in want.items():
        got = tuple(p[key].shape)
        if got != shape:
            detail = (f"action size {got[-1]} but the run's policies give {spec.act_dim}" if key == "prompt_actions"
                      else f"observation size {got[-1]} but the run's policies take {spec.obs_dim}")
            if got[-1] == shape[-1]:
                detail = f"shape {got}, the run's prompt layout needs {shape} ({layout})"
            raise PolicygenError(f"{what}: {key} has {detail}")
        if not np.isfinite(p[key]).all():
            raise PolicygenError(f"{what}: {key} contains NaN or inf values")


def record_prompts(policy: Policy, env_id: str, episodes: int, layout: PromptLayout, seed: int = 0,
                   backend: str = "auto") -> dict[str, np.ndarray]:
    """``episodes`` recorded episodes of ``policy`` as prompts (with their returns)."""
    thetas = np.repeat(policy.theta.numpy()[None].astype(np.float32), episodes, axis=0)
    rec, _ = rollout_records(env_id, policy.spec, thetas, policy.obs_mean, policy.obs_std, layout, seed, backend)
    return {k: rec[k] for k in (*PROMPT_KEYS, "returns", "success")}


def generate_policies(run_dir: str, prompt: str, n: int, out: str, seed: int = 0, force: bool = False) -> dict:
    """Write ``n`` policy files ``DIR/policy-0000.safetensors``... and ``DIR/index.json``, all or nothing."""
    out_dir = Path(out)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())) and not force:
        raise PolicygenError(f"{out_dir} exists and is not an empty folder; pass --force to replace it")
    model = load_make_an_agent(run_dir)
    prompts = read_prompts(prompt, model.spec, model.layout)
    t0 = time.perf_counter()
    thetas, which = model.generate(prompts, n, seed)
    gen_s = time.perf_counter() - t0
    env_id = json.loads((Path(run_dir) / "config.json").read_text())["env_ids"][0]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        index = []
        for i in range(n):
            ret = float(prompts["returns"][which[i]]) if "returns" in prompts else None
            meta = {"env_id": env_id, "algorithm": "make-an-agent", "run": str(run_dir), "prompt_index": int(which[i]),
                    "prompt_return": ret, "expected_return": ret,
                    "expected_return_source": "the return of the episode the prompt came from"}
            policy = Policy(model.spec, thetas[i].float(), model.ref_mean.copy(), model.ref_std.copy(), meta)
            name = f"policy-{i:04d}.safetensors"
            save_policy(policy, tmp / name)
            index.append({"file": name, "prompt_index": int(which[i]), "prompt_return": ret})
        atomic_write_json(tmp / "index.json", {"run": str(run_dir), "prompt": str(prompt), "n": n, "seed": seed,
                                               "env_id": env_id, "policies": index})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out_dir), "n": n, "prompts": int(len(prompts["prompt_obs"])), "env_id": env_id,
            "generate_s": gen_s, "policy": model.spec.describe()}
