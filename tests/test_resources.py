"""Resources: a full disk while checkpointing keeps the previous checkpoint and the run resumes exactly;
memory stays bounded over a long run (buffer sizes honoured)."""

from __future__ import annotations

import csv
import errno
import os

import numpy as np
import pytest
import torch
from conftest import walk_state

from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import resume_run, start_run
from policygen.errors import PolicygenError
from policygen.runs import files
from policygen.runs.rundir import RunDir

STUB = "policygen-tests/Stub-v0"


def _rows(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    rc = RunConfig(env_id=STUB, steps=3000, seed=3, backend="gymnasium", num_envs=4, eval_every=500,
                   eval_episodes=2, checkpoint_every=2)
    over = {"n_directions": "4", "top": "2"}
    ref = start_run("ars", rc, str(tmp_path / "ref"), overrides=over, quiet=True)
    real_save, saves = files.save_state, {"n": 0}

    def save_until_full(path, state, kind):
        saves["n"] += 1
        if saves["n"] == 4:  # the 4th checkpoint finds the disk full in the middle of its write
            before = RunDir(tmp_path / "full").load_checkpoint()
            saves["before"] = before["loop"]["iteration"]
            monkeypatch.setattr(files.os, "fsync", _enospc)
        return real_save(path, state, kind)

    monkeypatch.setattr("policygen.runs.rundir.save_state", save_until_full)
    with pytest.raises(PolicygenError, match=r"latest\.safetensors: No space left on device; nothing written"):
        start_run("ars", rc, str(tmp_path / "full"), overrides=over, quiet=True)
    monkeypatch.undo()
    run = RunDir.open(tmp_path / "full")
    assert run.load_checkpoint()["loop"]["iteration"] == saves["before"]  # the previous checkpoint, intact
    assert not [p for p in (run.path / "checkpoints").iterdir() if p.name != "latest.safetensors"]
    resumed = resume_run(str(run.path), quiet=True)
    assert _rows(resumed.path) == _rows(ref.path)
    assert resumed.summary["final_eval_return"] == ref.summary["final_eval_return"]


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("algo,over,size_key", [
    ("gogepo", {"hidden": "16,16", "chunk": "4", "generator_hidden": "16,16", "evaluator_hidden": "16,16",
                "n_probe": "4", "batch_size": "8", "buffer_size": "200", "evaluator_steps": "1",
                "generator_steps": "1"}, "buffer_size"),
    ("udrlpg", {"policy_hidden": "16,16", "chunk": "4", "embed_dim": "4", "generator_hidden": "16,16",
                "batch_size": "8", "hand_set_range": "false", "n_buckets": "20", "bucket_max_size": "3",
                "bucket_replace": "newest", "update_repeats": "1"}, "n_buckets"),
])
def test_memory_stays_bounded_over_a_long_run(tmp_path, algo, over, size_key):
    """Grow the run 4x after a warm-up: the buffers are full, so memory must stay flat."""
    torch.set_num_threads(1)
    rss = []
    for i, steps in enumerate((6000, 24000)):
        rc = RunConfig(env_id=STUB, steps=steps, seed=0, backend="gymnasium", num_envs=8, eval_every=steps,
                       eval_episodes=1, checkpoint_every=10**6)
        run = start_run(algo, rc, str(tmp_path / f"r{i}"), overrides=over, quiet=True)
        rss.append(_rss_mb())
        n_stored = _stored(run.load_checkpoint()["algo"])
        cap = int(over[size_key]) * (int(over.get("bucket_max_size", 1)))
        assert n_stored <= cap, (n_stored, cap)
    assert rss[1] - rss[0] < 30, rss  # MB: 4x the iterations may not grow the process


def _stored(state: dict) -> int:
    """Policies a checkpointed buffer holds (the largest first dimension among its theta tensors)."""
    sizes = [v.shape[0] for k, v in walk_state(state) if "buffer" in k and hasattr(v, "shape") and v.ndim == 2]
    assert sizes, "no buffer tensors found in the state"
    return max(sizes) if isinstance(sizes[0], int) else int(np.max(sizes))
