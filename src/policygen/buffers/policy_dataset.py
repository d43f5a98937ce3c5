"""Policy data sets (Make-An-Agent): policies with the behaviour they produced, on disk, pickle-free.

A data set is a folder::

    DATASET/
      dataset.json                    format, version, env ids (tasks), the policy spec every record shares,
                                      the prompt layout (steps, state_every, outcome_states, outcome rule)
      shards/shard-00000.safetensors  a block of records, written atomically, never rewritten

A shard holds the tensors of ``n`` records (float32 unless said): ``theta (n, P)``, ``obs_mean (n, obs)`` and
``obs_std (n, obs)`` (float64, the statistics the policy normalises with), ``prompt_obs (n, S, obs)`` (the
state of every ``state_every``-th step of the opening ``steps`` steps, raw), ``prompt_actions (n, steps, act)``,
``prompt_len (n,)`` int64 (steps the episode really had in the opening window; shorter episodes are padded
with their last state and zero actions), ``outcome_obs (n, K, obs)`` (raw), ``returns (n,)`` float64 (the
standard Gymnasium return of the episode the prompt comes from), ``success (n,)`` uint8. Its JSON metadata
(safetensors header) lists per record ``task`` and ``source`` (which checkpoint, which noise copy): a rerun
of ``collect`` skips sources already written, so a killed ``collect`` keeps every finished shard.

Outcome states (the paper's "states after the first success"): for a task with a success signal
(``info["success"]``) the ``K`` states from the first success step on; for tasks without one (MuJoCo
locomotion) the last ``K`` states of the episode, the state it ends in (fallen or still running).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec
from policygen.runs.files import _metadata, atomic_write_bytes, atomic_write_json, read_json

DATASET_FORMAT = "policygen-policy-dataset"
SHARD_FORMAT = "policygen-policy-dataset-shard"
VERSION = "1"
FIELDS = ("theta", "obs_mean", "obs_std", "prompt_obs", "prompt_actions", "prompt_len", "outcome_obs",
          "returns", "success")


@dataclass(frozen=True)
class PromptLayout:
    """What a behaviour prompt holds; the paper: 60 opening steps, a state every 3, 3 outcome states."""

    steps: int = 60
    """Opening steps of an episode the prompt covers (every action is kept)."""
    state_every: int = 3
    """Keep the state of every this-many-th step of the opening window."""
    outcome_states: int = 3
    """States describing the outcome: from the first success on, or the episode's last ones."""

    @property
    def n_states(self) -> int:
        return -(-self.steps // self.state_every)

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PolicygenError(f"prompt layout {k} must be an integer >= 1, got {v!r}")


def prompt_from_episode(layout: PromptLayout, obs: np.ndarray, actions: np.ndarray,
                        success: np.ndarray | None = None,
                        episode_success: bool | None = None) -> dict[str, np.ndarray]:
    """One episode's ``obs (T, obs)`` and ``actions (T, act)`` -> the prompt tensors of one record.

    ``success (T,)`` flags the states that count as succeeded (the outcome states start at the first);
    ``episode_success`` overrides the record's success flag (a success reached on the very last step has
    no recorded state after it); by default it is "some state flagged"."""
    obs, actions = np.asarray(obs, np.float64), np.asarray(actions, np.float32)
    if obs.ndim != 2 or len(obs) == 0 or len(actions) != len(obs):
        raise PolicygenError(f"an episode needs T >= 1 states and as many actions, got {obs.shape} and "
                             f"{actions.shape}")
    n = min(len(obs), layout.steps)
    window = np.concatenate([obs[:n], np.repeat(obs[n - 1:n], layout.steps - n, axis=0)])
    acts = np.zeros((layout.steps, actions.shape[1]), np.float32)
    acts[:n] = actions[:n]
    hit = np.flatnonzero(success) if success is not None else np.zeros(0, dtype=np.int64)
    first = int(hit[0]) if len(hit) else max(0, len(obs) - layout.outcome_states)
    out = obs[first:first + layout.outcome_states]
    out = np.concatenate([out, np.repeat(out[-1:], layout.outcome_states - len(out), axis=0)])
    return {"prompt_obs": window[::layout.state_every].astype(np.float32), "prompt_actions": acts,
            "prompt_len": np.int64(n), "outcome_obs": out.astype(np.float32),
            "success": np.uint8(len(hit) > 0 if episode_success is None else bool(episode_success))}


class PolicyDataset:
    """A data set folder: ``create`` or ``open`` it, ``append`` shards, ``load`` all records."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        self.spec = MLPSpec.from_dict(meta["spec"])
        self.layout = PromptLayout(**meta["prompt"])

    @classmethod
    def create_or_open(cls, path: str | Path, spec: MLPSpec, layout: PromptLayout, outcome: str) -> PolicyDataset:
        path = Path(path)
        if (path / "dataset.json").exists():
            ds = cls.open(path)
            ds.check_spec(spec, "the policies to collect")
            if ds.layout != layout:
                raise PolicygenError(f"{path}: data set has prompt layout {asdict(ds.layout)}, collect asked for "
                                     f"{asdict(layout)}; use another --out")
            return ds
        if path.exists() and path.is_dir() and any(path.iterdir()):
            raise PolicygenError(f"{path} exists, is not empty and holds no dataset.json; choose another --out")
        meta = {"format": DATASET_FORMAT, "version": VERSION, "spec": spec.to_dict(), "prompt": asdict(layout),
                "outcome": outcome}
        atomic_write_json(path / "dataset.json", meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path: str | Path) -> PolicyDataset:
        path = Path(path)
        if not path.is_dir():
            raise PolicygenError(f"{path}: no such data set folder")
        meta = read_json(path / "dataset.json", "policy data set description")
        if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
            raise PolicygenError(f"{path}/dataset.json: not a policygen policy data set")
        if meta.get("version") != VERSION:
            raise PolicygenError(f"{path}: data set version {meta.get('version')!r}; this policygen reads {VERSION}")
        try:
            return cls(path, meta)
        except (KeyError, TypeError) as e:
            raise PolicygenError(f"{path}/dataset.json: corrupt data set description ({e})") from None

    def check_spec(self, spec: MLPSpec, what: str) -> None:
        if spec != self.spec:
            raise PolicygenError(f"{what}: policy {spec.describe()} with {spec.num_params} parameters, but the data "
                                 f"set {self.path} holds {self.spec.describe()} with {self.spec.num_params}; "
                                 f"a data set holds one policy spec")

    def shards(self) -> list[Path]:
        return sorted((self.path / "shards").glob("shard-*.safetensors"))

    def sources(self) -> set[str]:
        """Sources already written (collect skips them on a rerun)."""
        return {r["source"] for shard in self.shards() for r in _read_shard(shard, self)[1]}

    def append(self, records: dict[str, np.ndarray], info: list[dict]) -> Path:
        """Write one shard of ``n`` records (arrays keyed by ``FIELDS``; ``info`` n dicts with task, source)."""
        n = len(info)
        self._check_arrays(records, n, "records to append")
        tensors = {k: torch.from_numpy(np.ascontiguousarray(records[k])) for k in FIELDS}
        meta = {"format": SHARD_FORMAT, "version": VERSION, "spec": json.dumps(self.spec.to_dict()),
                "records": json.dumps(info)}
        index = len(self.shards())
        path = self.path / "shards" / f"shard-{index:05d}.safetensors"
        atomic_write_bytes(path, st_save(tensors, metadata=meta))
        return path

    def _check_arrays(self, r: dict, n: int, what: str) -> None:
        s, lay = self.spec, self.layout
        shapes = {"theta": (n, s.num_params), "obs_mean": (n, s.obs_dim), "obs_std": (n, s.obs_dim),
                  "prompt_obs": (n, lay.n_states, s.obs_dim), "prompt_actions": (n, lay.steps, s.act_dim),
                  "prompt_len": (n,), "outcome_obs": (n, lay.outcome_states, s.obs_dim), "returns": (n,),
                  "success": (n,)}
        for k, shape in shapes.items():
            if k not in r:
                raise PolicygenError(f"{what}: field {k!r} is missing")
            if tuple(r[k].shape) != shape:
                raise PolicygenError(f"{what}: {k} has shape {tuple(r[k].shape)}, the data set's spec "
                                     f"{s.describe()} needs {shape}")
        if not all(np.isfinite(np.asarray(r[k], np.float64)).all() for k in shapes):
            raise PolicygenError(f"{what}: NaN or inf values")

    def load(self) -> tuple[dict[str, np.ndarray], list[dict]]:
        """All records: arrays keyed by ``FIELDS`` (concatenated over shards) and their info dicts."""
        parts, info = [], []
        for shard in self.shards():
            arrays, recs = _read_shard(shard, self)
            parts.append(arrays)
            info += recs
        if not parts:
            raise PolicygenError(f"{self.path}: the data set holds no records yet (run policygen collect)")
        return {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}, info


def _read_shard(path: Path, ds: PolicyDataset) -> tuple[dict[str, np.ndarray], list[dict]]:
    try:
        data = path.read_bytes()
        tensors, meta = st_load(data), _metadata(data)
        spec = MLPSpec.from_dict(json.loads(meta["spec"]))
        info = json.loads(meta["records"])
    except (SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicygenError(f"{path}: not a policygen data set shard (corrupt or truncated: "
                             f"{str(e).splitlines()[0][:120]})") from None
    if meta.get("format") != SHARD_FORMAT:
        raise PolicygenError(f"{path}: a safetensors file, but not a policygen data set shard")
    ds.check_spec(spec, str(path))
    if not isinstance(info, list) or not all(isinstance(r, dict) and "source" in r for r in info):
        raise PolicygenError(f"{path}: corrupt record list in the shard's metadata")
    arrays = {k: tensors[k].numpy() for k in FIELDS if k in tensors}
    ds._check_arrays(arrays, len(info), str(path))
    return arrays, info


def rebase_thetas(spec: MLPSpec, thetas: np.ndarray, means: np.ndarray, stds: np.ndarray,
                  ref_mean: np.ndarray, ref_std: np.ndarray) -> np.ndarray:
    """``thetas (n, P)`` acting on ``(obs - mean_i) / std_i`` -> the same policies acting on
    ``(obs - ref_mean) / ref_std``: exact, by folding the change into the first layer.

    ``W' = W diag(ref_std / std_i)``, ``b' = b + W diag(1 / std_i) (ref_mean - mean_i)``; needs biases.
    """
    if not spec.bias:
        raise PolicygenError(f"policy {spec.describe()} has no biases; observation statistics cannot be folded in")
    out = np.array(thetas, dtype=np.float64)
    o, i = spec.layer_shapes[0]
    w = out[:, : o * i].reshape(-1, o, i)
    b = out[:, o * i: o * i + o]
    b += np.einsum("noi,ni->no", w / stds[:, None, :], ref_mean[None] - means)
    w *= (ref_std[None] / stds)[:, None, :]
    out[:, : o * i] = w.reshape(len(out), -1)
    out[:, o * i: o * i + o] = b
    return out.astype(np.float32)


def with_biases(spec: MLPSpec, thetas: np.ndarray) -> tuple[MLPSpec, np.ndarray]:
    """The same policies in the spec with biases (zero ones inserted): ARS's linear policies have none,
    and folding observation statistics in (``rebase_thetas``) needs them."""
    if spec.bias:
        return spec, thetas
    biased = MLPSpec(**{**spec.to_dict(), "bias": True})
    parts, i = [], 0
    for o, inp in spec.layer_shapes:
        parts += [thetas[:, i:i + o * inp], np.zeros((len(thetas), o), thetas.dtype)]
        i += o * inp
    return biased, np.concatenate(parts, axis=1)
