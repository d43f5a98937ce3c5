"""Policy-space map (the GoGePo paper's figure): fingerprints of the buffer's policies, PCA, coloured by return.

A policy's fingerprint is its actions at a fixed set of probing states, flattened (``n_probe * act_dim``).
GoGePo: the evaluator's learned probing states. Runs without an evaluator (UDRLPG): observations visited by
the run's evaluation policy in a few episodes with a fixed seed, normalised with the run's statistics
(``n_probe`` of them, evenly spaced). The fingerprints are projected on their first two principal
components (numpy SVD of the centred matrix, each axis' sign fixed so its largest loading is positive),
and the generator's outputs for a range of commands are projected with the same basis and drawn as a path.
Only the run's latest checkpoint is mapped: a run keeps ``checkpoints/latest.safetensors`` alone.
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
        idx = buf.newest_indices()
        thetas, returns = buf.thetas[idx].float(), buf.values["train_return"][idx].numpy()
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


def policy_map(loaded: LoadedRun, n_commands: int = 11, max_points: int = 1000, n_probe: int = 200,
               seed: int = 0) -> dict:
    """Everything the figure shows, JSON-ready: coordinates, returns, the commands' path."""
    from policygen.analysis.sweep import seen_range

    thetas, returns = buffer_policies(loaded, max_points, seed)
    probes, source = probing_states(loaded, n_probe, seed)
    spec = loaded.algo.spec
    coords, mean, basis, share = pca(fingerprints(spec, thetas, probes))
    lo, hi = seen_range(loaded)
    commands = np.linspace(lo, hi, n_commands)
    with torch.no_grad():
        generated = loaded.algo.generate(torch.as_tensor(commands, dtype=torch.float32)).float()
    path = (fingerprints(spec, generated, probes) - mean) @ basis.T
    return {"env_id": loaded.run_config.env_id, "algorithm": loaded.run.config["algorithm"],
            "env_steps": loaded.env_steps, "checkpoint": "latest", "probes": source, "n_policies": len(returns),
            "coords": coords.tolist(), "returns": returns.tolist(), "explained_variance": share.tolist(),
            "commands": commands.tolist(), "command_coords": path.tolist(),
            "return_convention": loaded.algo.return_convention}


def plot_map(result: dict, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policygen.runs.files import atomic_write_bytes

    xy, path = np.asarray(result["coords"]), np.asarray(result["command_coords"])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=result["returns"], cmap="viridis", s=10, alpha=0.8, linewidths=0)
    fig.colorbar(sc, ax=ax, label=f"training return ({result['return_convention']})")
    ax.plot(path[:, 0], path[:, 1], "-o", color="crimson", ms=4, lw=1.5, label="generator G(command)")
    for i in (0, len(path) - 1):
        ax.annotate(f"{result['commands'][i]:.0f}", path[i], textcoords="offset points", xytext=(5, 5),
                    color="crimson", fontsize=8)
    ev = result["explained_variance"]
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}% of variance)")
    ax.set_title(f"{result['algorithm']} on {result['env_id']}: {result['n_policies']} buffer policies, "
                 f"{result['env_steps']} env steps", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)
