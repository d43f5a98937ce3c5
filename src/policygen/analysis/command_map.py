"""A generator's command map: which input to give G so its policy earns the return asked for.

A trained generator's achieved return is often a monotone but mis-scaled function of its command (a UDRLPG
pendulum G earns about twice the command up to 500, then 1000). ``policygen calibrate RUN`` rolls G out at
``points`` commands over the returns seen in training, and at midpoints where its return climbs steeply,
``episodes`` episodes each (it reports the env steps), fits achieved return against command with isotonic
(non-decreasing) regression, and writes ``RUN/command_map.json``. From then on ``generate``, ``sweep`` and
``policygen.load(RUN).generate`` give G the smallest input whose fitted return reaches the one requested (the
fitted curve is linear between its points); ``--raw`` skips the map. The map belongs to the checkpoint it was
fitted on: after more training it is ignored, with a note, until fitted again. It cannot create returns G never
earns: where the fitted curve jumps (a pendulum policy balances or falls), a request inside the jump gets an
input at the jump.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policygen.errors import PolicygenError
from policygen.runs.files import atomic_write_json, read_json

FILE = "command_map.json"
FORMAT = "policygen-command-map-1"


def isotonic(y: np.ndarray) -> list[tuple[int, int, float]]:
    """Pool-adjacent-violators: the non-decreasing least-squares fit of ``y`` (equal weights), as blocks
    ``(first, last, value)`` with strictly increasing values (equal neighbours pooled)."""
    blocks: list[list[float]] = []  # first, last, value, weight
    for i, v in enumerate(np.asarray(y, dtype=np.float64)):
        blocks.append([i, i, float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][2] >= blocks[-1][2]:
            b = blocks.pop()
            a = blocks[-1]
            a[1], a[2], a[3] = b[1], (a[2] * a[3] + b[2] * b[3]) / (a[3] + b[3]), a[3] + b[3]
    return [(int(a), int(b), v) for a, b, v, _ in blocks]


@dataclass
class CommandMap:
    commands: list[float]
    """The generator inputs rolled out (raw returns, the run's convention), increasing."""
    achieved: list[float]
    """Mean return achieved at each (the run's convention)."""
    episodes: int
    seed: int
    env_steps_used: int
    """Env steps the fit rolled out (not counted in the run's training steps)."""
    checkpoint_env_steps: int
    """The training env steps of the checkpoint whose generator was rolled out."""

    @classmethod
    def fit(cls, commands, achieved, **meta) -> CommandMap:
        c, a = np.asarray(commands, dtype=np.float64), np.asarray(achieved, dtype=np.float64)
        if c.ndim != 1 or len(c) < 2 or c.shape != a.shape or not np.all(np.diff(c) > 0) \
                or not (np.isfinite(c).all() and np.isfinite(a).all()):
            raise PolicygenError(f"a command map needs >= 2 increasing finite commands with one finite achieved "
                                 f"return each; got {len(c)} commands, {len(a)} returns")
        return cls([float(x) for x in c], [float(x) for x in a], **meta)

    def knots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted curve: its strictly increasing returns, and the first and last input giving each."""
        c = np.asarray(self.commands)
        blocks = isotonic(np.asarray(self.achieved))
        return (np.array([v for _, _, v in blocks]), np.array([c[i] for i, _, _ in blocks]),
                np.array([c[j] for _, j, _ in blocks]))

    def inputs_for(self, returns) -> np.ndarray:
        """Generator inputs for the requested ``returns``: the smallest input whose fitted return reaches the
        request (the fitted curve is linear between grid points), clamped at the curve's ends."""
        values, first, last = self.knots()
        r = np.asarray(returns, dtype=np.float64)
        b = np.clip(np.searchsorted(values, r, side="right") - 1, 0, len(values) - 1)
        nxt = np.minimum(b + 1, len(values) - 1)
        gap = values[nxt] - values[b]
        frac = np.where(gap > 0, (r - values[b]) / np.where(gap > 0, gap, 1.0), 0.0)
        between = last[b] + frac * (first[nxt] - last[b])
        exact = (r <= values[b]) | (b == len(values) - 1)  # on a fitted value, below the curve, or above it
        return np.where(exact, first[b], between)

    def to_json(self) -> dict:
        values, first, last = self.knots()
        return {"format": FORMAT, "commands": self.commands, "achieved": self.achieved, "episodes": self.episodes,
                "seed": self.seed, "env_steps_used": self.env_steps_used,
                "checkpoint_env_steps": self.checkpoint_env_steps,
                "fitted": {"returns": values.tolist(), "first_input": first.tolist(), "last_input": last.tolist()}}

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / FILE
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> CommandMap | None:
        """The run's command map, None if it has none; a damaged or foreign file is refused in one line."""
        path = Path(run_dir) / FILE
        if not path.exists():
            return None
        d = read_json(path, "command map")
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
            return cls.fit(d["commands"], d["achieved"], episodes=int(d["episodes"]), seed=int(d["seed"]),
                           env_steps_used=int(d["env_steps_used"]),
                           checkpoint_env_steps=int(d["checkpoint_env_steps"]))
        except (AttributeError, KeyError, TypeError, ValueError, PolicygenError) as e:
            raise PolicygenError(f"{path}: not a policygen command map ({type(e).__name__}: {e}); delete it or "
                                 f"fit it again with policygen calibrate") from None


def map_for(run_dir: str | Path, env_steps: int) -> CommandMap | None:
    """The command map to use for the checkpoint at ``env_steps``: None without one, or (with a note on
    stderr) when it was fitted on another checkpoint."""
    m = CommandMap.load(run_dir)
    if m is not None and m.checkpoint_env_steps != env_steps:
        print(f"policygen: note: {Path(run_dir) / FILE} was fitted at {m.checkpoint_env_steps} env steps, this "
              f"generator is at {env_steps}: not used (policygen calibrate {run_dir} fits it again)",
              file=sys.stderr)
        return None
    return m


def calibrate(loaded, points: int = 21, episodes: int = 10, seed: int = 1, backend: str | None = None,
              refine: int = 3, progress=None) -> dict:
    """Fit and save ``loaded``'s command map (see the module doc); the fit's rollouts and the map as a dict.

    ``points`` commands evenly over the returns seen in training, then ``refine`` rounds that each roll out the
    midpoints of the ``points // 2`` neighbouring pairs whose fitted returns differ most: where G's return climbs
    steeply (a pendulum G goes from falling to balancing within a few percent of the range) an even grid is too
    coarse to invert. ``progress(line)``, if given, hears of each pass as it starts."""
    from policygen.analysis.sweep import seen_range, sweep

    say = progress or (lambda line: None)

    if points < 2 or refine < 0:
        raise PolicygenError(f"--points must be at least 2 and --refine at least 0, got {points}, {refine}")
    lo, hi = seen_range(loaded)
    if not hi > lo:
        raise PolicygenError(f"{loaded.run.path}: the returns seen in training span nothing ({lo}); no map")
    grid = np.linspace(lo, hi, points)
    say(f"grid: {points} commands x {episodes} episodes")
    res = sweep(loaded, grid, episodes, seed, backend, raw=True)
    raw_spearman, raw_mae = res["spearman"], res["mae_frac"]
    cmds, ach, steps = grid, np.asarray(res["achieved_mean"]), res["rollout_env_steps"]
    for r in range(refine):
        fitted = np.concatenate([[v] * (j - i + 1) for i, j, v in isotonic(ach)])
        jumps = np.diff(fitted)
        steep = [k for k in np.argsort(-jumps, kind="stable")[:max(1, points // 2)] if jumps[k] > 0]
        if not steep:
            break
        new = (cmds[steep] + cmds[np.add(steep, 1)]) / 2
        say(f"refinement {r + 1} of {refine}: {len(new)} commands x {episodes} episodes ({steps} env steps so far)")
        # other episodes than the grid's and than a default sweep's (seed 0)
        res = sweep(loaded, new, episodes, seed + 1000 * (r + 1), backend, raw=True)
        order = np.argsort(np.concatenate([cmds, new]), kind="stable")
        cmds = np.concatenate([cmds, new])[order]
        ach = np.concatenate([ach, res["achieved_mean"]])[order]
        steps += res["rollout_env_steps"]
    m = CommandMap.fit(cmds, ach, episodes=episodes, seed=seed, env_steps_used=steps,
                       checkpoint_env_steps=loaded.env_steps)
    path = m.save(loaded.run.path)
    return {"run_dir": str(loaded.run.path), "map": str(path), "refine": refine, **m.to_json(),
            "raw_spearman": raw_spearman, "raw_mae_frac": raw_mae}


__all__ = ["CommandMap", "calibrate", "isotonic", "map_for"]
