"""Command sweeps: ask a trained generator for many returns, measure what its policies achieve.

Commands are in the run's return convention (a Hopper run that learns without the survival bonus is
commanded without it); ``achieved_mean`` is measured in that same convention, and the standard Gymnasium
return is reported beside it.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from policygen.algorithms.loading import LoadedRun
from policygen.analysis.stats import spearman_or_none
from policygen.errors import PolicygenError
from policygen.rollout.engine import RolloutEngine, RolloutResult
from policygen.runs.files import atomic_write_bytes

MAX_COMMANDS = 10_000


def parse_commands(text: str | None, seen: tuple[float, float]) -> np.ndarray:
    """``LO:HI:N`` (N evenly spaced, ends included), a comma list, or None for 21 over the seen range."""
    if not text:
        return np.linspace(seen[0], seen[1], 21)
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            if not 1 <= int(n) <= MAX_COMMANDS:
                raise ValueError(f"N must be between 1 and {MAX_COMMANDS}")
            commands = np.linspace(float(lo), float(hi), int(n))
        else:
            commands = np.array([float(x) for x in text.split(",") if x.strip()])
        if not 1 <= len(commands) <= MAX_COMMANDS or not np.isfinite(commands).all():
            raise ValueError(f"1 to {MAX_COMMANDS} finite commands are needed")
        return commands
    except ValueError as e:
        raise PolicygenError(f"--commands {text!r}: expected LO:HI:N (e.g. 0:1000:21) or A,B,C ({e})") from None


def seen_range(loaded: LoadedRun) -> tuple[float, float]:
    fn = getattr(loaded.algo, "seen_return_range", None)
    if fn is None:
        raise PolicygenError(f"{loaded.run.config['algorithm']} is not a generator: it cannot be commanded")
    lo, hi = fn()
    return float(lo), float(hi)


def outside_note(commands: np.ndarray, seen: tuple[float, float]) -> list[float]:
    """Commands outside the range of returns seen in training (allowed: that is extrapolation)."""
    return [float(c) for c in commands if c < seen[0] - 1e-9 or c > seen[1] + 1e-9]


def convention_returns(res: RolloutResult, bonus: float) -> np.ndarray:
    """(B, k) returns of every episode in the run's convention: each episode's standard return minus ``bonus``
    per step of that episode (not of the mean length: that keeps the mean but not the spread)."""
    return res.episode_returns - bonus * res.episode_lengths if bonus else res.episode_returns


def sweep(loaded: LoadedRun, commands: np.ndarray, episodes: int = 5, seed: int = 0,
          backend: str | None = None, raw: bool = False) -> dict:
    """Generate one policy per command, run ``episodes`` episodes of each (one engine call), compare. The
    generator is given the run's command map's inputs (``policygen calibrate``) unless ``raw`` or it has none."""
    if episodes < 1:
        raise PolicygenError(f"--episodes must be at least 1, got {episodes}")
    seen = seen_range(loaded)
    algo, rc = loaded.algo, loaded.run_config
    inputs, mapped = loaded.generator_inputs(commands, raw)
    thetas = algo.generate(torch.as_tensor(inputs, dtype=torch.float32))
    engine = RolloutEngine(rc.env_id, algo.spec, num_envs=min(64, len(commands) * episodes),
                           backend=backend or rc.backend, seed=seed, return_convention=algo.return_convention,
                           env_kwargs=rc.env_kwargs, normalize_obs=getattr(algo, "normalize_obs", True))
    engine.obs_stats = loaded.obs_stats.copy()
    res = engine.evaluate(thetas, episodes=episodes, count_steps=False)
    engine.close()
    bonus = engine.info.survival_bonus if algo.return_convention == "no_survival_bonus" else 0.0
    per_ep = convention_returns(res, bonus)
    achieved = per_ep.mean(axis=1)
    span = float(commands.max() - commands.min()) if len(commands) > 1 else 1.0
    out = {
        "run_dir": str(loaded.run.path), "env_id": rc.env_id, "algorithm": loaded.run.config["algorithm"],
        "return_convention": algo.return_convention, "survival_bonus_removed": bonus,
        "episodes": episodes, "seed": seed,
        "seen_range": list(seen),
        "commands": [float(c) for c in commands],
        "achieved_mean": [float(a) for a in achieved],
        "achieved_std": [float(s) for s in per_ep.std(axis=1)],
        "achieved_standard_mean": [float(a) for a in res.returns],
        "spearman": spearman_or_none(commands, achieved),  # None: fewer than 3 commands or constant achieved
        "mae_frac": float(np.mean(np.abs(achieved - commands)) / span) if span > 0 else None,
        "outside_seen_range": outside_note(commands, seen),
        "command_map": mapped,
        "rollout_env_steps": int(res.env_steps),
    }
    if mapped:
        out["generator_inputs"] = [float(x) for x in inputs]
    predict = getattr(algo, "predict_returns", None)
    if predict is not None:
        out["evaluator_prediction"] = [float(v) for v in predict(thetas)]
        out.update(error_split(out))
    return out


def error_split(result: dict) -> dict:
    """Whose error a generator's miss is, for a sweep with the evaluator's predictions (GoGePo), as a fraction of
    the commands' span: ``evaluator_error_frac`` = mean |achieved - V(G(x))| (V misjudges G's policies) and
    ``generator_error_frac`` = mean |V(G(x)) - x| (G misses the target it is trained on), x being G's input: the
    command, or what a command map gives for it. Without a map the MAE is at most their sum. Empty without
    predictions or with fewer than 2 commands."""
    c = np.asarray(result["commands"], dtype=float)
    if "evaluator_prediction" not in result or len(c) < 2 or c.max() == c.min():
        return {}
    x = np.asarray(result.get("generator_inputs", c), dtype=float)
    v, a, span = np.asarray(result["evaluator_prediction"]), np.asarray(result["achieved_mean"]), c.max() - c.min()
    return {"evaluator_error_frac": float(np.mean(np.abs(a - v)) / span),
            "generator_error_frac": float(np.mean(np.abs(v - x)) / span)}


GROUP_MARKERS = {"seen bucket": "o", "never-filled bucket": "s", "above range": "^", "below range": "v",
                 "held-out band": "D"}
"""Marker of each unseen-report command group (``UDRLPG.command_groups``)."""


def plot_sweep(result: dict, path: str) -> None:
    """Commanded vs achieved return, with the identity line, the seen range and the evaluator's guess."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.array(result["commands"])
    m, s = np.array(result["achieved_mean"]), np.array(result["achieved_std"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    lo, hi = result["seen_range"]
    ax.axvspan(lo, hi, color="0.92", label="returns seen in training")
    ax.plot([c.min(), c.max()], [c.min(), c.max()], "k--", lw=1, label="achieved = commanded")
    unseen = result.get("unseen")
    if unseen is None:
        ax.errorbar(c, m, yerr=s, fmt="o-", ms=4, capsize=2,
                    label=f"achieved (mean ± std, {result['episodes']} ep.)")
    else:  # the unseen-returns report: one marker per command group, the held-out band shaded
        if unseen["holdout_band"]:
            ax.axvspan(*unseen["holdout_band"], color="tab:red", alpha=0.12, label="held-out band")
        ax.plot(c, m, "-", color="0.6", lw=0.8)
        g = np.array(unseen["groups"])
        for name, fmt in GROUP_MARKERS.items():
            if (g == name).any():
                ax.errorbar(c[g == name], m[g == name], yerr=s[g == name], fmt=fmt, ms=5, capsize=2,
                            label=f"{name} ({(g == name).sum()})")
    if "evaluator_prediction" in result:
        ax.plot(c, result["evaluator_prediction"], "s", ms=3, alpha=0.7, label="evaluator V(G(c))")
    removed = result.get("survival_bonus_removed", 0.0)
    # a no_survival_bonus run on an env without a bonus uses the standard return: say that, not the setting
    ax.set_xlabel("commanded return" + (f" (survival bonus {removed:g}/step removed)" if removed else ""))
    ax.set_ylabel("achieved return")
    via = ", through its command map" if result.get("command_map") else ""
    ax.set_title(f"{result['algorithm']} on {result['env_id']}{via}\n{_calibration(result, 2, 0)}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # a missing folder is created; a failed write is one line


def table(result: dict) -> str:
    """A plain-text table of commanded vs achieved returns."""
    pred = result.get("evaluator_prediction")
    head = f"{'command':>10} {'achieved':>10} {'± std':>8}" + (f" {'V(G(c))':>9}" if pred else "")
    lines = [head + "  note", "-" * (len(head) + 8)]
    outside = set(result["outside_seen_range"])
    for k, (c, m, s) in enumerate(zip(result["commands"], result["achieved_mean"], result["achieved_std"],
                                      strict=True)):
        v = f" {pred[k]:9.1f}" if pred else ""
        lines.append(f"{c:10.1f} {m:10.1f} {s:8.1f}{v}  {'outside seen range' if c in outside else ''}")
    lines.append(_calibration(result, 3, 1))
    split = error_split(result)
    if split:
        x = "x" if "generator_inputs" in result else "c"  # through a map G's input x is not the command
        lines.append(f"{'of which ' if x == 'c' else ''}V misjudges G's policies by "
                     f"{100 * split['evaluator_error_frac']:.1f}% (|achieved - V(G({x}))|) and G misses V's target by "
                     f"{100 * split['generator_error_frac']:.1f}% (|V(G({x})) - {x}|)")
    return "\n".join(lines)


def _calibration(result: dict, rho_digits: int, mae_digits: int) -> str:
    """'Spearman ...; MAE ...% of range'; a Spearman of None (fewer than 3 commands, or the same achieved return
    at every command) reads 'undefined'."""
    rho, mae = result.get("spearman"), result.get("mae_frac")
    rho_s = "undefined" if rho is None else f"{rho:.{rho_digits}f}"
    mae_s = "undefined" if mae is None else f"{100 * mae:.{mae_digits}f}% of the range"
    return f"Spearman {rho_s}; mean absolute error {mae_s}"
