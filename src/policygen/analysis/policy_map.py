"""Policy-space map (the GoGePo paper's figure): fingerprints of the buffer's policies, PCA, coloured by return.

A policy's fingerprint is its actions at a fixed set of probing states, flattened (``n_probe * act_dim``).
GoGePo: the evaluator's learned probing states. Runs without an evaluator (UDRLPG): observations visited by
the run's evaluation policy in a few episodes with a fixed seed, normalised with the run's statistics
(``n_probe`` of them, evenly spaced). The fingerprints are projected on their first two principal
components (numpy SVD of the centred matrix, each axis' sign fixed so its largest loading is positive),
and the generator's outputs for a range of commands are projected with the same basis and drawn as a path.
A run keeps ``checkpoints/latest.safetensors``; ``train --snapshots N`` also keeps N snapshots along the run,
and the map then draws one panel per checkpoint in one shared basis (the GoGePo paper's figure over training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from policygen.algorithms.loading import LoadedRun
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, forward


def buffer_policies(loaded: LoadedRun, max_points: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``thetas (N, P)`` and their training returns (the run's convention): the buffer, or a seeded sample."""
    buf = getattr(loaded.algo, "buffer", None)
    if buf is None:
        raise PolicygenError(f"{loaded.run.config['algorithm']} keeps no buffer of policies to map "
                             f"(policygen map takes gogepo and udrlpg runs)")
    if hasattr(buf, "newest_indices"):  # GoGePo's recency buffer
        newest = buf.gather(buf.newest_indices())  # gather: re-based to the run's statistics if it re-bases
        thetas, returns = newest["theta"], newest["train_return"].numpy()
    else:  # UDRLPG's buckets or FIFO: entries (arrival, raw return, theta)
        entries = list(getattr(buf, "entries", None) or [e for b in buf.buckets.values() for e in b])
        entries.sort(key=lambda e: e[0])
        if not entries:
            raise PolicygenError("the run's buffer is empty: nothing to map yet")
        thetas = torch.stack([e[2] for e in entries]).float()
        returns = np.array([e[1] for e in entries], dtype=np.float64)
    if len(returns) == 0:
        raise PolicygenError("the run's buffer is empty: nothing to map yet")
    if len(returns) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(returns), max_points, replace=False))
        thetas, returns = thetas[torch.as_tensor(keep)], returns[keep]
    return thetas, np.asarray(returns, dtype=np.float64)


def probing_states(loaded: LoadedRun, n_probe: int, seed: int) -> tuple[torch.Tensor, str]:
    """``probes (S, obs_dim)`` in normalised observation space, and where they come from."""
    evaluator = getattr(loaded.algo, "evaluator", None)
    if evaluator is not None:
        return evaluator.probes.detach().float().clone(), "the evaluator's learned probing states"
    from policygen.analysis.play import play

    policy = loaded.policy()
    eps = play(policy, loaded.run_config.env_id, 3, seed, env_kwargs=loaded.run_config.env_kwargs,
               keep_actions=True)
    obs = np.concatenate(eps.observations)
    pick = np.linspace(0, len(obs) - 1, min(n_probe, len(obs))).round().astype(int)
    normed = (obs[pick] - policy.obs_mean) / policy.obs_std
    return (torch.as_tensor(normed, dtype=torch.float32),
            f"{len(pick)} states visited by the evaluation policy in 3 episodes (seeds {seed}..{seed + 2})")


@torch.no_grad()
def fingerprints(spec: MLPSpec, thetas: torch.Tensor, probes: torch.Tensor, chunk: int = 128) -> np.ndarray:
    """``(N, S * act_dim)`` actions of each policy at the probing states, in chunks (2x256 policies are big)."""
    out = []
    for i in range(0, thetas.shape[0], chunk):
        t = thetas[i:i + chunk]
        acts = forward(spec, t, probes.unsqueeze(0).expand(t.shape[0], -1, -1))
        out.append(acts.reshape(t.shape[0], -1).double().numpy())
    return np.concatenate(out)


def pca(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates (N, k), mean, basis (k, D) and explained variance share (k,); deterministic signs."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:k]
    if basis.shape[0] < k:  # fewer policies than components: pad with zero axes
        basis = np.vstack([basis, np.zeros((k - basis.shape[0], x.shape[1]))])
    signs = np.sign(basis[np.arange(k), np.abs(basis).argmax(axis=1)])
    basis = basis * np.where(signs == 0, 1.0, signs)[:, None]
    var = s ** 2
    share = np.zeros(k)
    share[:min(k, len(var))] = (var / var.sum())[:k] if var.sum() > 0 else 0.0
    return (x - mean) @ basis.T, mean, basis, share


def _stage(loaded: LoadedRun, probes: torch.Tensor, n_commands: int, max_points: int, seed: int,
           name: str) -> dict:
    from policygen.analysis.sweep import seen_range

    thetas, returns = buffer_policies(loaded, max_points, seed)
    lo, hi = seen_range(loaded)
    commands = np.linspace(lo, hi, n_commands)
    with torch.no_grad():
        generated = loaded.algo.generate(torch.as_tensor(commands, dtype=torch.float32)).float()
    spec = loaded.algo.spec
    return {"checkpoint": name, "env_steps": loaded.env_steps, "fp": fingerprints(spec, thetas, probes),
            "returns": returns, "commands": commands, "gen_fp": fingerprints(spec, generated, probes)}


def policy_map(loaded: LoadedRun, n_commands: int = 11, max_points: int = 1000, n_probe: int = 200,
               seed: int = 0, snapshots: list[tuple[str, LoadedRun]] = ()) -> dict:
    """Everything the figure shows, JSON-ready: per checkpoint (snapshots, then the latest) the buffer's
    coordinates and returns and the commands' path, all in one PCA basis (fit on every panel's buffer) and
    with the latest checkpoint's probing states, so panels can be compared."""
    probes, source = probing_states(loaded, n_probe, seed)
    stages = [_stage(run, probes, n_commands, max_points, seed, name) for name, run in snapshots]
    stages.append(_stage(loaded, probes, n_commands, max_points, seed, "latest"))
    _, mean, basis, share = pca(np.concatenate([st["fp"] for st in stages]))
    panels = [{"checkpoint": st["checkpoint"], "env_steps": st["env_steps"], "n_policies": len(st["returns"]),
               "coords": ((st["fp"] - mean) @ basis.T).tolist(), "returns": st["returns"].tolist(),
               "commands": st["commands"].tolist(), "command_coords": ((st["gen_fp"] - mean) @ basis.T).tolist()}
              for st in stages]
    out = {"env_id": loaded.run_config.env_id, "algorithm": loaded.run.config["algorithm"], "probes": source,
           "explained_variance": share.tolist(), "return_convention": loaded.algo.return_convention,
           "panels": panels}
    if not snapshots:
        out["note"] = ("latest checkpoint only: maps over training need snapshots kept along the run "
                       "(policygen train ... --snapshots N, then policygen map --snapshots)")
    return out


def plot_map(result: dict, out: str | Path) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policygen.runs.files import atomic_write_bytes

    panels = result["panels"]
    all_xy = np.concatenate([np.asarray(p["coords"]) for p in panels] + [np.asarray(p["command_coords"])
                                                                         for p in panels])
    all_ret = np.concatenate([p["returns"] for p in panels])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 4.6), squeeze=False,
                             sharex=True, sharey=True)
    for ax, p in zip(axes[0], panels, strict=True):
        sc = _panel(ax, p, float(all_ret.min()), float(all_ret.max()))
    pad = 0.05 * (all_xy.max(axis=0) - all_xy.min(axis=0) + 1e-9)
    axes[0][0].set_xlim(all_xy[:, 0].min() - pad[0], all_xy[:, 0].max() + pad[0])
    axes[0][0].set_ylim(all_xy[:, 1].min() - pad[1], all_xy[:, 1].max() + pad[1])
    ev = result["explained_variance"]
    for ax in axes[0]:
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of variance)")
    axes[0][0].set_ylabel(f"PC2 ({100 * ev[1]:.0f}% of variance)")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.colorbar(sc, ax=axes[0].tolist(), fraction=0.03, pad=0.01,
                 label=f"training return ({result['return_convention']})")
    fig.suptitle(f"{result['algorithm']} on {result['env_id']}: policy space (fingerprints: {result['probes']})",
                 fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


def _panel(ax, p: dict, vmin: float, vmax: float):
    xy, path = np.asarray(p["coords"]), np.asarray(p["command_coords"])
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=p["returns"], cmap="viridis", vmin=vmin, vmax=vmax, s=10, alpha=0.8,
                    linewidths=0)
    ax.plot(path[:, 0], path[:, 1], "-o", color="crimson", ms=4, lw=1.5, label="generator G(command)")
    for i in (0, len(path) - 1):
        ax.annotate(f"{p['commands'][i]:.0f}", path[i], textcoords="offset points", xytext=(5, 5),
                    color="crimson", fontsize=8)
    ax.set_title(f"{p['env_steps']} env steps: {p['n_policies']} buffer policies", fontsize=9)
    return sc


def pick_snapshots(names: list[str], k: int) -> list[str]:
    """``k`` of the snapshot file names, evenly spread (all if there are fewer)."""
    if k < 0:
        raise PolicygenError(f"--snapshots takes a count >= 0, got {k}")
    if len(names) <= k:
        return list(names)
    return [names[i] for i in np.linspace(0, len(names) - 1, k).round().astype(int)]
