"""Policy files: ``.safetensors`` (policygen's own, pickle-free), ``.pt`` (TorchScript, needs only torch) and
``.onnx`` (needs only onnxruntime); the last two are written by ``policies/export.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from policygen.errors import PolicygenError
from policygen.policies.export import save_onnx, save_torchscript
from policygen.policies.flat_mlp import MLPSpec
from policygen.policies.standalone import Policy
from policygen.runs.files import _metadata, atomic_write_bytes

POLICY_SUFFIXES = (".safetensors", ".pt", ".onnx")


def save_policy(policy: Policy, path: str | Path, force: bool = False) -> Path:
    path = Path(path)
    if path.suffix not in POLICY_SUFFIXES:
        raise PolicygenError(f"unknown policy file extension {path.suffix!r}; use one of {list(POLICY_SUFFIXES)}")
    if path.exists() and not force:
        raise PolicygenError(f"{path} exists; pass --force to overwrite it")
    if path.suffix == ".safetensors":
        atomic_write_bytes(path, st_save(policy.tensors(), metadata=policy.metadata()))
    elif path.suffix == ".pt":
        save_torchscript(policy, path)
    else:
        save_onnx(policy, path)
    return path


def load_policy(path: str | Path) -> Policy:
    """Read a ``.safetensors`` policy file (no code runs, nothing is unpickled)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise PolicygenError(f"{path}: policygen reads its own .safetensors policy files here; got {path.suffix!r}")
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        meta = _metadata(data)
    except FileNotFoundError:
        raise PolicygenError(f"{path}: no such policy file") from None
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicygenError(f"{path}: not a policygen policy file (corrupt or truncated: {e})") from None
    if meta.get("format") != "policygen-policy" or not {"theta", "obs_mean", "obs_std"} <= set(tensors):
        raise PolicygenError(f"{path}: a safetensors file, but not a policygen policy (foreign file)")
    try:
        spec = MLPSpec.from_dict(json.loads(meta["spec"]))
        extra = json.loads(meta.get("meta", "{}"))
    except (KeyError, json.JSONDecodeError) as e:
        raise PolicygenError(f"{path}: corrupt policy metadata ({e})") from None
    theta = tensors["theta"].float()
    spec.check_thetas(theta)
    mean, std = tensors["obs_mean"].double().numpy(), tensors["obs_std"].double().numpy()
    if mean.shape != (spec.obs_dim,) or std.shape != (spec.obs_dim,) or not np.all(std > 0):
        raise PolicygenError(f"{path}: observation statistics do not fit the policy spec")
    return Policy(spec, theta, mean, std, extra)
