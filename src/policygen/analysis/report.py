"""``policygen report``: a Markdown benchmark report with PNG figures, from run directories or suite folders.

Per environment: learning curves (mean over seeds, 95% bootstrap band) against env steps and against
wall-clock seconds; the final-return table (IQM with a 95% stratified bootstrap CI, the rliable way,
analysis/stats.py); the probability of improvement of each method over each other; calibration curves of
the generators whose run directory holds a sweep.json. Then the machine, versions and commits.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import platform
import re
from pathlib import Path

import numpy as np

from policygen.analysis.report_data import RunData, by_env, collect
from policygen.analysis.stats import bootstrap_ci, iqm, mean_band, poi_ci
from policygen.runs.files import atomic_write_bytes, atomic_write_json

GRID = 60
STEP_BASED = {"td3", "sac", "ddpg", "udrl"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _slug(env: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", env).strip("_")


def curve(runs: list[RunData], axis: str) -> tuple[np.ndarray, tuple]:
    """x grid and (mean, low, high) of the evaluation return over the runs, interpolated on the grid.

    The grid ends at the shortest run's last evaluation (no run is extrapolated)."""
    xs = [r.steps if axis == "steps" else r.wall for r in runs]
    grid = np.linspace(max(x[0] for x in xs), min(x[-1] for x in xs), GRID)
    ys = np.array([np.interp(grid, x, r.evals) for x, r in zip(xs, runs, strict=True)])
    return grid, mean_band(ys)


def plot_curves(env: str, algos: dict[str, list[RunData]], axis: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for algo, runs in algos.items():
        grid, (mean, lo, hi) = curve(runs, axis)
        line = "--" if algo in STEP_BASED else "-"
        (h,) = ax.plot(grid, mean, line, lw=1.5, label=f"{algo} ({len(runs)})")
        ax.fill_between(grid, lo, hi, color=h.get_color(), alpha=0.18, lw=0)
    ax.set_xlabel("env steps" if axis == "steps" else "wall-clock seconds")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{env}: mean over seeds, 95% bootstrap band", fontsize=9)
    if axis == "wall":
        ax.set_xscale("symlog", linthresh=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def final_table(algos: dict[str, list[RunData]]) -> list[dict]:
    """Per algorithm: runs, IQM of the final returns with its 95% CI, mean, median wall and env steps, and the
    median wall-clock seconds to first reach 90% of the best IQM in the table (and how many runs did)."""
    rows = []
    for algo, runs in algos.items():
        point, lo, hi = bootstrap_ci([r.final for r in runs])
        rows.append({"algorithm": algo, "runs": len(runs), "iqm": point, "ci_low": lo, "ci_high": hi,
                     "mean": float(np.mean([r.final for r in runs])),
                     "median_wall_s": float(np.median([r.wall_total for r in runs])),
                     "median_env_steps": int(np.median([r.env_steps for r in runs])),
                     "seeds": [r.seed for r in runs]})
    target = 0.9 * max(r["iqm"] for r in rows)
    for row in rows:
        times = [_time_to(r, target) for r in algos[row["algorithm"]]]
        reached = [t for t in times if t is not None]
        row.update(target=target, reached=len(reached), median_wall_to_target=float(np.median(reached))
                   if reached else None)
    return rows


def run_rows(algos: dict[str, list[RunData]]) -> list[dict]:
    """One row per run: final, best and last-20-mean evaluation return, env steps, wall seconds, and the
    sweep's calibration when the run has one (what a paper's per-seed table shows). The last-N window is the
    trainer's own (summary.json's last20_eval_mean), the UDRLPG paper's summary."""
    from policygen.algorithms.trainer import LAST_EVALS

    rows = []
    for algo, runs in algos.items():
        for r in runs:
            rows.append({"algorithm": algo, "seed": r.seed, "final": r.final, "best": float(r.evals.max()),
                         "last_mean": float(r.evals[-LAST_EVALS:].mean()),
                         "last_n": int(min(LAST_EVALS, len(r.evals))), "last_window": LAST_EVALS,
                         "env_steps": r.env_steps, "wall_s": r.wall_total,
                         "spearman": r.sweep.get("spearman") if r.sweep else None,
                         "mae_frac": r.sweep.get("mae_frac") if r.sweep else None,
                         "command_map": bool(r.sweep.get("command_map")) if r.sweep else False})
    return rows


def _time_to(run: RunData, target: float) -> float | None:
    hit = np.nonzero(run.evals >= target)[0]
    return float(run.wall[hit[0]]) if len(hit) else None


def poi_matrix(algos: dict[str, list[RunData]]) -> dict[str, dict[str, list[float]]]:
    """{X: {Y: [P(X > Y), low, high]}} over final returns, for every ordered pair X != Y."""
    finals = {a: [r.final for r in runs] for a, runs in algos.items()}
    return {x: {y: list(poi_ci(finals[x], finals[y])) for y in finals if y != x} for x in finals}


def plot_poi(env: str, matrix: dict, path: Path) -> None:
    plt = _plt()
    names = list(matrix)
    m = np.array([[0.5 if x == y else matrix[x][y][0] for y in names] for x in names])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names), 0.8 + 0.5 * len(names)), dpi=110)
    im = ax.imshow(m, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(f"{env}: P(row > column), final return", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)


def plot_calibration(env: str, runs: list[RunData], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.2), dpi=110)
    lo = min(min(r.sweep["commands"]) for r in runs)
    hi = max(max(r.sweep["commands"]) for r in runs)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="achieved = commanded")
    for r in runs:
        s, rho = r.sweep, r.sweep.get("spearman")  # None: undefined (a command-blind generator)
        ax.errorbar(s["commands"], s["achieved_mean"], yerr=s.get("achieved_std"), fmt="o-", ms=3, capsize=2,
                    label=f"{r.algo} s{r.seed} (Spearman {'undefined' if rho is None else f'{rho:.2f}'})")
    ax.set_xlabel("commanded return (the run's convention)")
    ax.set_ylabel("achieved return")
    ax.set_title(f"{env}: generator calibration", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1_5_15": [round(v, 2) for v in load],
            "platform": platform.platform()}


def _installed() -> dict:
    """Versions of the baselines' libraries, installed or not (the report process does not import them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("stable-baselines3", "sb3-contrib", "gymnasium", "mujoco", "envpool"):
        try:
            out[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            out[name.replace("-", "_")] = "not installed"
    return out


def build_report(paths: list[str], out: str, env: str | None = None) -> dict:
    """Write ``out/report.md``, its PNGs and ``out/report.json``; returns the JSON."""
    from policygen.algorithms.trainer import git_commit, versions
    from policygen.analysis.report_md import markdown

    runs, skipped, notes = collect(paths, env)
    out_p = Path(out)
    result: dict = {"made": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "inputs": list(paths),
                    "machine": machine(), "versions": {**versions(), **_installed()}, "commit": git_commit(),
                    "run_commits": sorted({r.commit for r in runs if r.commit}), "runs_used": len(runs),
                    "skipped": skipped, "notes": notes, "envs": {}}
    for env_name, algos in by_env(runs).items():
        slug = _slug(env_name)
        e: dict = {"figures": {}, "table": final_table(algos), "runs": run_rows(algos),
                   "poi": poi_matrix(algos) if len(algos) > 1 else {}}
        for axis in ("steps", "wall"):
            name = f"curves-{slug}-{axis}.png"
            plot_curves(env_name, algos, axis, out_p / name)
            e["figures"][f"curves_{axis}"] = name
        if e["poi"]:
            e["figures"]["poi"] = f"poi-{slug}.png"
            plot_poi(env_name, e["poi"], out_p / e["figures"]["poi"])
        gens = [r for a, rs in algos.items() for r in rs if a in ("gogepo", "udrlpg")]
        swept = [r for r in gens if r.sweep is not None]
        if swept:
            e["figures"]["calibration"] = f"calibration-{slug}.png"
            plot_calibration(env_name, swept, out_p / e["figures"]["calibration"])
        e["calibration"] = [{"run": str(r.path), "algorithm": r.algo, "seed": r.seed,
                             "spearman": r.sweep.get("spearman"), "mae_frac": r.sweep.get("mae_frac"),
                             "command_map": bool(r.sweep.get("command_map"))} for r in swept]
        e["generators_without_sweep"] = [str(r.path) for r in gens if r.sweep is None]
        result["envs"][env_name] = e
    atomic_write_bytes(out_p / "report.md", markdown(result).encode())
    atomic_write_json(out_p / "report.json", result)
    return result


__all__ = ["build_report", "iqm", "curve", "final_table", "run_rows", "poi_matrix"]
