"""The run directory: config.json, metrics.csv, checkpoints/, summary.json, status.json, a lock.

A run is ``running`` (or was killed while running: resumable) until ``summary.json`` is written and the
status says ``complete``. Every file is replaced atomically; metrics.csv is cut back to the last
checkpoint on resume so no row is logged twice.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from pathlib import Path

from policygen.errors import PolicygenError
from policygen.runs.files import atomic_write_bytes, atomic_write_json, load_state, read_json, save_state, write_error

METRIC_COLUMNS = [
    "env_steps", "wall_s", "iteration", "episodes", "train_return_mean", "train_return_max",
    "best_train_return", "command", "loss", "eval_return", "eval_return_std", "eval_command", "failures",
]
"""Columns every algorithm writes (blank where a column does not apply), so reports treat all alike."""
RUN_FORMAT = "policygen-run/1"
CHECKPOINT = "checkpoints/latest.safetensors"
TRAINED_WITH = "trained_with"  # checkpoint key: the JSON of RunDir.trained_with() when it was saved


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, force: bool = False) -> RunDir:
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()) and not force:
            hint = " (resume it with --resume)" if (run.path / "config.json").exists() else ""
            raise PolicygenError(f"run directory {run.path} already exists and is not empty{hint}; "
                                 f"choose another --out or pass --force to overwrite")
        run.path.mkdir(parents=True, exist_ok=True)
        run.lock()
        for stale in ("summary.json", "metrics.csv", CHECKPOINT):
            (run.path / stale).unlink(missing_ok=True)
        for pattern in ("snapshot-*.safetensors", "sb3-snapshots/model-*.zip"):
            for stale in (run.path / "checkpoints").glob(pattern):
                stale.unlink()
        atomic_write_json(run.path / "config.json", {"format": RUN_FORMAT, **config})
        run.set_status("running")
        run.write_metrics([])
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, lock: bool = False) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise PolicygenError(f"{run.path}: no such run directory")
        cfg = run.config
        if cfg.get("format") != RUN_FORMAT:
            raise PolicygenError(f"{run.path}: config.json has format {cfg.get('format')!r}; this policygen "
                                 f"reads {RUN_FORMAT!r} run directories")
        if lock:
            run.lock()
        return run

    def lock(self) -> None:
        """Hold an exclusive lock on the run for this process; a second writer is refused."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PolicygenError(f"{self.path} is in use by another policygen process (locked)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- files -----------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return _object(self.path / "config.json", "run config")

    @property
    def status(self) -> str:
        p = self.path / "status.json"
        status = _object(p, "run status").get("status", "unknown") if p.exists() else "unknown"
        return status if isinstance(status, str) else "unknown"

    def set_status(self, status: str, **extra) -> None:
        atomic_write_json(self.path / "status.json", {"status": status, **extra})

    @property
    def summary(self) -> dict:
        return _object(self.path / "summary.json", "run summary")

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)
        self.set_status("complete")

    def read_metrics(self) -> list[dict]:
        p = self.path / "metrics.csv"
        if not p.exists():
            return []
        with open(p, newline="") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.path / "metrics.csv", buf.getvalue().encode())

    def append_metrics(self, row: dict) -> None:
        """Append one row (a torn last line from a kill is dropped on resume by the row count)."""
        try:
            with open(self.path / "metrics.csv", "a", newline="") as f:
                csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore").writerow(
                    {k: _fmt(v) for k, v in row.items()})
                f.flush()
        except OSError as e:
            raise write_error(self.path / "metrics.csv", e) from None

    def trained_with(self) -> dict:
        """What in config.json a checkpoint's state depends on (``run.steps`` may change: a resume may train
        longer)."""
        c = self.config  # read from the file: what a resume would train with
        r = c.get("run") or {}
        out = {"algorithm": c.get("algorithm"), "algo": c.get("algo"), "policy": c.get("policy"),
               "return_convention": c.get("return_convention"),
               "run": {k: r.get(k) for k in ("env_id", "seed", "env_kwargs")}}
        # make-an-agent runs: the data set, seed, prompt layout and chunking their stages were trained on
        # (keys other algorithms' configs do not have, so their checkpoints' records stay as they were)
        out.update({k: c[k] for k in ("dataset", "dataset_records", "seed", "prompt", "chunks") if k in c})
        return out

    def check_resumable(self, state: dict) -> None:
        """Refuse a checkpoint whose run's settings were edited in config.json since it was saved: resuming
        would silently continue a different run. Checkpoints from before this check carry no record."""
        saved = state.get(TRAINED_WITH) if isinstance(state, dict) else None
        if saved is None:
            return
        old, now = json.loads(saved), json.loads(json.dumps(self.trained_with()))
        if old != now:
            changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _differences(old, now)[:4])
            raise PolicygenError(f"{self.path}: config.json is not what this run's checkpoint was trained with "
                                 f"({changed}); resuming would continue a different run. Put config.json back, "
                                 f"or start a new run with the new settings")

    def save_checkpoint(self, state: dict) -> None:
        save_state(self.path / CHECKPOINT, self.stamped(state), kind="checkpoint")

    def stamped(self, state: dict) -> dict:
        """``state`` with the record ``check_resumable`` compares against config.json."""
        return {**state, TRAINED_WITH: json.dumps(self.trained_with(), sort_keys=True)}

    def load_checkpoint(self, name: str | None = None) -> dict:
        """The latest checkpoint, or the snapshot file ``name`` in checkpoints/."""
        return load_state(self.path / (CHECKPOINT if name is None else f"checkpoints/{name}"), kind="checkpoint")

    def save_snapshot(self, state: dict, env_steps: int) -> None:
        save_state(self.path / f"checkpoints/snapshot-{env_steps:010d}.safetensors", self.stamped(state),
                   kind="checkpoint")

    def snapshots(self) -> list[str]:
        """Snapshot file names, oldest first."""
        return sorted(p.name for p in (self.path / "checkpoints").glob("snapshot-*.safetensors"))

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).exists()


def _differences(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old, new) for every leaf that differs between two JSON objects."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _object(path: Path, what: str) -> dict:
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise PolicygenError(f"{path}: not a valid {what} (a JSON object was expected, found "
                             f"{type(value).__name__})")
    return value


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
