"""Unseen returns: bucket membership, command groups, the hold-out band, the report end to end, last-20."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from policygen.algorithms.base import RunConfig
from policygen.algorithms.trainer import start_run
from policygen.algorithms.udrlpg import UDRLPG, UDRLPGConfig
from policygen.analysis.unseen import default_commands, group_summary, unseen_report
from policygen.buffers.buckets import BucketBuffer, FifoBuffer
from policygen.cli import main
from policygen.envs.make import EnvInfo
from policygen.errors import PolicygenError
from policygen.runs.files import load_state, save_state

INFO = EnvInfo("Synthetic-v0", obs_dim=3, act_dim=1, action_high=(1.0,), max_episode_steps=10,
               survival_bonus=0.0)
SMALL = dict(policy_hidden=(8, 8), chunk=4, embed_dim=4, generator_hidden=(32, 32), batch_size=8,
             hand_set_range=False)


def small(**kw) -> UDRLPG:
    return UDRLPG(UDRLPGConfig(**{**SMALL, **kw}), INFO, 0)


class Res:
    """What the engine hands ``_store``: training returns, failures, lengths."""

    def __init__(self, returns):
        self.train_returns = np.array(returns, dtype=float)
        self.failed, self.lengths = np.zeros(len(returns), bool), np.full(len(returns), 10.0)


def test_bucket_filled_follows_the_stored_policies_and_rescaling():
    buf = BucketBuffer(0.0, 10.0, n_buckets=10, capacity=1)
    buf.add(torch.zeros(3, 2), [0.5, 3.2, 10.0])
    k, filled = buf.filled([0.1, 0.9, 1.5, 3.0, 3.99, 9.5, 10.0, 12.0, -4.0])
    assert k.tolist() == [0, 0, 1, 3, 3, 9, 9, 12, 0]  # 10.0 is s == 1: the top bucket; -4 clips to 0
    assert filled.tolist() == [True, True, False, True, True, True, True, False, True]
    buf.rescale(20.0)  # buckets twice as wide: 3.2 now fills [2, 4), 10.0 fills [10, 12)
    assert buf.filled([2.1, 4.5, 11.9])[1].tolist() == [True, False, True]


def test_fifo_filled_uses_equal_bins_of_what_it_still_holds():
    buf = FifoBuffer(0.0, 10.0, size=2, n_bins=5)
    buf.add(torch.zeros(3, 2), [1.0, 5.0, 9.0])  # 1.0 drops out of the FIFO
    assert buf.filled([1.5, 3.5, 5.5, 8.1])[1].tolist() == [False, False, True, True]
    assert FifoBuffer(0.0, 1.0).filled([0.5])[1].tolist() == [False]  # empty buffer: nothing filled


def test_command_groups_on_a_synthetic_buffer():
    algo = small(n_buckets=10, return_range=(0.0, 100.0), holdout_band=(0.4, 0.6))
    algo.buffer = algo._make_buffer(0.0, 100.0)
    algo.buffer.add(torch.zeros(4, algo.spec.num_params), [2.0, 15.0, 75.0, 90.0])
    groups = algo.command_groups([2.0, 8.0, 25.0, 45.0, 60.0, 79.0, 90.0, 95.0, 120.0, 1.0])
    assert groups == ["seen bucket", "seen bucket", "never-filled bucket", "held-out band", "held-out band",
                      "seen bucket", "seen bucket", "above range", "above range", "below range"]
    plain = small(n_buckets=10)
    plain.buffer = plain._make_buffer(0.0, 100.0)
    plain.buffer.add(torch.zeros(2, plain.spec.num_params), [0.0, 90.0])
    assert plain.command_groups([50.0]) == ["never-filled bucket"]  # no band: an empty bucket is just empty


def test_group_summary_figures():
    c = [0, 10, 20, 30, 50, 60]
    a = [0, 12, 18, 33, 5, 5]
    s = group_summary(c, a, ["seen bucket"] * 4 + ["never-filled bucket"] * 2, span=100.0)
    seen, never = s["seen bucket"], s["never-filled bucket"]
    assert seen["n"] == 4 and seen["mae"] == pytest.approx(7 / 4) and seen["mae_frac"] == pytest.approx(7 / 400)
    assert seen["spearman"] == pytest.approx(1.0) and seen["mean_error"] == pytest.approx(3 / 4)
    assert never["n"] == 2 and never["spearman"] is None and never["mean_error"] == pytest.approx(-50.0)
    flat = group_summary([1, 2, 3], [4, 4, 4], ["above range"] * 3, span=10.0)["above range"]
    assert flat["spearman"] is None  # constant achieved returns have no rank correlation


def test_holdout_never_stores_band_policies_and_survives_save_load(tmp_path):
    algo = small(n_buckets=20, return_range=(0.0, 100.0), holdout_band=(0.4, 0.6))
    algo.buffer = algo._make_buffer(0.0, 100.0)
    thetas = torch.arange(6, dtype=torch.float32)[:, None].expand(6, algo.spec.num_params).clone()
    res = Res([10.0, 40.0, 50.0, 60.0, 61.0, 39.0])
    algo._store(thetas, res.train_returns, res.failed, res.lengths)
    assert sorted(algo.buffer.stored_returns().tolist()) == [10.0, 39.0, 61.0]
    assert algo.held_out == 3 and algo.buffer.best_scaled == pytest.approx(0.61)
    stored_thetas = sorted(e[2][0].item() for b in algo.buffer.buckets.values() for e in b)
    assert stored_thetas == [0.0, 4.0, 5.0]  # the right thetas went with the kept returns
    assert algo.seen_return_range() == (10.0, 61.0)  # band returns were seen, only not stored
    save_state(tmp_path / "c.safetensors", {"algo": algo.state_dict()}, kind="checkpoint")
    twin = small(n_buckets=20, return_range=(0.0, 100.0), holdout_band=(0.4, 0.6))
    twin.load_state_dict(load_state(tmp_path / "c.safetensors", kind="checkpoint")["algo"])
    assert twin.held_out == 3 and twin.holdout_range() == (40.0, 60.0)
    res = Res([55.0, 70.0])
    twin._store(thetas[:2], res.train_returns, res.failed, res.lengths)
    assert twin.held_out == 4 and sorted(twin.buffer.stored_returns().tolist()) == [10.0, 39.0, 61.0, 70.0]


@pytest.mark.parametrize("band", [(0.6, 0.4), (0.5, 0.5), (-0.1, 0.5), (0.5, 1.2), (0.5,), (0.1, 0.2, 0.3)])
def test_bad_holdout_band_refused(band):
    with pytest.raises(PolicygenError, match=r"holdout_band must be empty or two fractions 0 <= lo < hi <= 1"):
        UDRLPGConfig(holdout_band=band)


def test_holdout_band_needs_a_fixed_range():
    with pytest.raises(PolicygenError, match="needs a fixed return range"):
        small(holdout_band=(0.4, 0.6))
    assert small(holdout_band=(0.0, 1.0), return_range=(0.0, 1.0)).in_holdout_band([-5.0, 2.0]).tolist() == \
        [True, False]  # band from 0 takes returns clipped to the range minimum, as the buffer scales them


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ["--steps", "600", "--backend", "gymnasium", "--num-envs", "8", "--eval-every", "20",
         "--eval-episodes", "1", "--quiet", "--set", "policy_hidden=8,8", "--set", "chunk=4", "--set",
         "embed_dim=4", "--set", "generator_hidden=16,16", "--set", "update_repeats=2", "--set",
         "rollout_steps=0", "--set", "rollout_repeats=2", "--set", "return_range=-5,15", "--set", "n_buckets=40"]


@pytest.mark.parametrize("extra", [["--set", "holdout_band=0.4,0.6"], ["--set", "buffer=fifo"]])
def test_unseen_report_end_to_end(capsys, tmp_path, stub_id, extra):
    torch.set_num_threads(1)
    run = str(tmp_path / "run")
    code, out, err = run_cli(capsys, "train", "udrlpg", "--env", stub_id, "--out", run, *TRAIN, *extra)
    assert code == 0, err
    summary = json.loads(out)
    # last-20: every evaluation row of metrics.csv, the last 20 of them averaged
    rows = [r for r in __import__("csv").DictReader(open(f"{run}/metrics.csv")) if r["eval_return"]]
    assert len(rows) > 20 and summary["last20_eval_count"] == 20
    assert summary["last20_eval_mean"] == pytest.approx(np.mean([float(r["eval_return"]) for r in rows[-20:]]),
                                                        rel=1e-5)
    code, out, err = run_cli(capsys, "sweep", run, "--unseen-report", "--episodes", "1",
                             "--commands=-5:15:21")
    assert code == 0, err
    res = json.loads(out)
    u = res["unseen"]
    assert len(u["groups"]) == 21 and (tmp_path / "run" / "unseen.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "unseen.json").read_text()) == res  # written beside the run too
    assert sum(s["n"] for s in u["summary"].values()) == 21 and "Spearman" in err
    if "buffer=fifo" in extra:
        assert u["buffer"] == "fifo" and u["holdout_band"] is None
    else:  # commands from the band are labelled so, and the run kept the band's policies out
        band = [c for c, g in zip(res["commands"], u["groups"], strict=True) if g == "held-out band"]
        assert band and all(3.0 - 1e-9 <= c <= 7.0 + 1e-9 for c in band) and u["holdout_band"] == [3.0, 7.0]
        assert u["held_out_policies"] > 0


def test_unseen_report_refuses_a_generator_without_buckets():
    loaded = types.SimpleNamespace(algo=object(), run=types.SimpleNamespace(config={"algorithm": "gogepo"}))
    with pytest.raises(PolicygenError, match="needs a return-bucketed buffer .udrlpg runs.; gogepo has none"):
        default_commands(loaded)
    with pytest.raises(PolicygenError, match="gogepo has none"):
        unseen_report(loaded, np.array([1.0]))


def test_last20_counts_fewer_evaluations(tmp_path, stub_id):
    rc = RunConfig(env_id=stub_id, steps=300, backend="gymnasium", num_envs=8, eval_every=100, eval_episodes=1)
    run = start_run("ars", rc, str(tmp_path / "ars"), quiet=True)
    rows = [r for r in run.read_metrics() if r["eval_return"]]
    assert run.summary["last20_eval_count"] == len(rows) < 20
    assert run.summary["last20_eval_mean"] == pytest.approx(np.mean([float(r["eval_return"]) for r in rows]),
                                                            rel=1e-5)
