"""Return-bucket buffer: geometry, growth, capacity, replacement, sampling law, bad input, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policygen.buffers.buckets import BucketBuffer, FifoBuffer
from policygen.errors import PolicygenError


def theta(i: float, p: int = 3) -> torch.Tensor:
    return torch.full((p,), float(i))


def test_bucket_assignment_and_clipping():
    buf = BucketBuffer(r_min=-100.0, r_max=100.0, n_buckets=10)
    # width 20 per bucket; below min clips to bucket 0; exactly max belongs to the top bucket
    got = buf.bucket_of([-500, -100, -80.01, -80, 0, 99.9, 100]).tolist()
    assert got == [0, 0, 0, 1, 5, 9, 9]
    assert buf.scale(-500) == 0.0 and buf.scale(100) == 1.0
    assert np.isclose(buf.unscale(buf.scale(37.0)), 37.0)


def test_growth_above_range():
    buf = BucketBuffer(r_min=0.0, r_max=10.0, n_buckets=5)
    assert buf.num_buckets == 5
    buf.add(torch.stack([theta(1), theta(2)]), [10.5, 23.0])  # buckets 5 and 11
    assert sorted(buf.buckets) == [5, 11]
    assert buf.num_buckets == 12
    assert buf.best_return == 23.0 and np.isclose(buf.best_scaled, 2.3)


@pytest.mark.parametrize("capacity", [1, 2, 3])
def test_capacity_means_what_it_says(capacity):
    for replace in ("newest", "reject"):
        buf = BucketBuffer(0.0, 1.0, n_buckets=4, capacity=capacity, replace=replace)
        for i in range(capacity + 3):
            buf.add(theta(i), 0.1)  # all in bucket 0
        assert len(buf.buckets[0]) == capacity
        assert len(buf) == capacity


def test_replacement_rules():
    new = BucketBuffer(0.0, 1.0, n_buckets=4, capacity=2, replace="newest")
    rej = BucketBuffer(0.0, 1.0, n_buckets=4, capacity=2, replace="reject")
    for i in range(5):
        new.add(theta(i), 0.1)
        stored = rej.add(theta(i), 0.1)
        assert stored.tolist() == [i < 2]
    assert [e[0] for e in new.buckets[0]] == [3, 4]  # the two newest arrivals
    assert [e[0] for e in rej.buckets[0]] == [0, 1]  # the first two stay forever
    assert [float(e[2][0]) for e in new.buckets[0]] == [3.0, 4.0]
    assert rej.best_return == 0.1  # rejected returns still count as seen


def _fill(weighting: str) -> BucketBuffer:
    buf = BucketBuffer(0.0, 1.0, n_buckets=10, capacity=3, weighting=weighting, seed=1)
    # uneven occupancy: bucket 1 holds 3 policies, bucket 4 one, bucket 7 two, bucket 9 one
    for i, r in enumerate([0.15, 0.12, 0.11, 0.45, 0.71, 0.75, 0.95]):
        buf.add(theta(i), r)
    return buf


@pytest.mark.parametrize("weighting", ["exp", "reciprocal", "uniform"])
def test_probabilities_follow_documented_law(weighting):
    buf = _fill(weighting)
    m = 4
    rank = np.arange(1, m + 1)
    laws = {"exp": np.exp(0.3 * (rank - m)), "reciprocal": 1.0 / (m - rank + 1), "uniform": np.ones(m)}
    w = laws[weighting]
    p_bucket = w / w.sum()
    counts = [3, 1, 2, 1]
    expect = np.repeat(p_bucket / counts, counts)
    probs = buf.probabilities()
    got = np.array([p for _, _, p in probs])
    assert np.allclose(got, expect)
    assert np.isclose(got.sum(), 1.0)
    assert probs[-1][1] == 0.95 and np.isclose(probs[-1][2], p_bucket[-1])


def test_uniform_mix_spreads_a_share_evenly():
    """P(bucket) = (1 - u) * law + u / m: with u = 1 every non-empty bucket is drawn equally."""
    plain, mixed, even = _fill("exp"), _fill("exp"), _fill("exp")
    mixed.uniform_mix, even.uniform_mix = 0.25, 1.0
    p0, p1, p2 = (b.bucket_weights()[1] for b in (plain, mixed, even))
    assert np.allclose(p1, 0.75 * p0 + 0.25 / 4) and np.isclose(p1.sum(), 1.0)
    assert np.allclose(p2, 0.25)
    ids = mixed.sample(40_000)[1][:, 0].round().long().numpy()
    freq = np.bincount(ids, minlength=7) / 40_000
    p = np.zeros(7)
    for a, _, pa in mixed.probabilities():
        p[a] = pa
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / 40_000) + 1e-9), (freq, p)
    with pytest.raises(PolicygenError, match="uniform_mix"):
        BucketBuffer(uniform_mix=2.0)


@pytest.mark.parametrize("weighting", ["exp", "reciprocal", "uniform"])
def test_sampling_frequencies_match_probabilities(weighting):
    buf = _fill(weighting)
    n = 40_000
    _, thetas = buf.sample(n)
    ids = thetas[:, 0].round().long().numpy()  # theta(i) is filled with arrival number i
    freq = np.bincount(ids, minlength=7) / n
    p = np.zeros(7)
    for a, _, pa in buf.probabilities():
        p[a] = pa
    # 5 standard errors per entry: fails on a wrong law, passes on sampling noise
    tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-9
    assert np.all(np.abs(freq - p) <= tol), (freq, p)


def test_sample_returns_scaled_commands_of_the_thetas():
    buf = BucketBuffer(-10.0, 10.0, n_buckets=20, seed=3)
    for i, r in enumerate([-10.0, 0.0, 10.0, 30.0]):
        buf.add(theta(i), r)
    cmds, thetas = buf.sample(200)
    want = {0: 0.0, 1: 0.5, 2: 1.0, 3: 2.0}
    for c, t in zip(cmds.tolist(), thetas[:, 0].round().long().tolist(), strict=True):
        assert np.isclose(c, want[t])


def test_seeded_sampling_is_reproducible():
    a, b = _fill("exp"), _fill("exp")
    assert torch.equal(a.sample(50)[1], b.sample(50)[1])


def test_rescale_merges_buckets_by_replacement_rule():
    buf = BucketBuffer(0.0, 1.0, n_buckets=4, capacity=1, replace="newest")
    buf.add(theta(0), 0.1)   # bucket 0
    buf.add(theta(1), 0.3)   # bucket 1
    buf.add(theta(2), 1.9)   # bucket 7 (above the range)
    buf.rescale(2.0)         # widths double: 0.1 and 0.3 now share bucket 0, 1.9 -> bucket 3
    assert sorted(buf.buckets) == [0, 3]
    assert buf.buckets[0][0][0] == 1  # the newer one survives
    assert buf.num_buckets == 4


def test_max_age_drops_old_policies_and_the_command_follows():
    buf = BucketBuffer(r_min=0.0, r_max=10.0, n_buckets=10, capacity=2, max_age=3)
    buf.add(theta(9), [9.5])  # a lucky record
    assert buf.best_scaled == pytest.approx(0.95)
    buf.add(torch.stack([theta(1), theta(2)]), [1.0, 2.0])
    assert len(buf) == 3 and buf.best_scaled == pytest.approx(0.95)  # 2 newer arrivals: still held
    buf.add(theta(3), [3.0])
    assert sorted(buf.buckets) == [1, 2, 3] and buf.best_scaled == pytest.approx(0.3)  # dropped; c* follows
    assert buf.best_return == 9.5  # the record is still the best ever seen
    forever = BucketBuffer(r_min=0.0, r_max=10.0, n_buckets=10, capacity=2)
    forever.add(theta(9), [9.5])
    forever.add(torch.stack([theta(1), theta(2), theta(3)]), [1.0, 2.0, 3.0])
    assert len(forever) == 4 and forever.best_scaled == pytest.approx(0.95)


def test_max_age_survives_a_save_and_load(tmp_path):
    from policygen.runs.files import load_state, save_state

    make = lambda: BucketBuffer(r_min=0.0, r_max=10.0, n_buckets=10, capacity=2, max_age=4, seed=1)  # noqa: E731
    buf = make()
    for i in range(6):
        buf.add(theta(i), [float(i)])
    save_state(tmp_path / "s.safetensors", {"buf": buf.state_dict()}, kind="checkpoint")
    other = make()
    other.load_state_dict(load_state(tmp_path / "s.safetensors", kind="checkpoint")["buf"])
    for b in (buf, other):
        b.add(theta(7), [7.0])  # the policy of arrival 2 ages out in both
    assert other.probabilities() == buf.probabilities() and sorted(other.buckets) == [3, 4, 5, 7]
    assert other.best_scaled == buf.best_scaled == pytest.approx(0.7)


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_buckets=0), ">= 1"), (dict(n_buckets=-5), ">= 1"), (dict(n_buckets=2.5), ">= 1"),
    (dict(r_min=1.0, r_max=1.0), "min < max"), (dict(r_min=5.0, r_max=1.0), "min < max"),
    (dict(r_max=float("inf")), "finite"), (dict(capacity=0), ">= 1"),
    (dict(replace="oldest"), "newest"), (dict(weighting="linear"), "reciprocal"),
    (dict(max_age=-1), ">= 0"), (dict(max_age=2.5), ">= 0"),
])
def test_bad_arguments_refused(kwargs, words):
    with pytest.raises(PolicygenError, match=words):
        BucketBuffer(**kwargs)


def test_bad_use_refused():
    buf = BucketBuffer()
    with pytest.raises(PolicygenError, match="empty"):
        buf.sample(1)
    with pytest.raises(PolicygenError, match="finite"):
        buf.add(theta(0), float("nan"))
    with pytest.raises(PolicygenError, match=r"\(N, P\)"):
        buf.add(torch.zeros(2, 3), [1.0])
    with pytest.raises(PolicygenError, match=">= 1"):
        FifoBuffer(size=0)


def test_fifo_keeps_newest_and_samples_uniformly():
    buf = FifoBuffer(0.0, 10.0, size=3, seed=0)
    for i in range(5):
        buf.add(theta(i), float(i))
    assert [e[0] for e in buf.entries] == [2, 3, 4]
    assert all(np.isclose(p, 1 / 3) for _, _, p in buf.probabilities())
    cmds, thetas = buf.sample(3000)
    freq = np.bincount(thetas[:, 0].long().numpy(), minlength=5)[2:] / 3000
    assert np.allclose(freq, 1 / 3, atol=0.05)
    assert np.allclose(sorted(set(np.round(cmds.numpy(), 4))), [0.2, 0.3, 0.4])


@pytest.mark.parametrize("make", [lambda: _fill("exp"), lambda: FifoBuffer(0.0, 1.0, size=4, seed=2)])
def test_state_dict_roundtrip_through_a_state_file(tmp_path, make):
    from policygen.runs.files import load_state, save_state

    buf = make()
    if isinstance(buf, FifoBuffer):
        for i in range(6):
            buf.add(theta(i), 0.1 * i)
    buf.sample(5)  # advance the generator
    save_state(tmp_path / "s.safetensors", {"buf": buf.state_dict()}, kind="checkpoint")
    other = make()
    other.load_state_dict(load_state(tmp_path / "s.safetensors", kind="checkpoint")["buf"])
    assert other.probabilities() == buf.probabilities()
    assert other.best_return == buf.best_return and other.arrivals == buf.arrivals
    assert torch.equal(other.sample(20)[1], buf.sample(20)[1])


def test_empty_state_roundtrip(tmp_path):
    from policygen.runs.files import load_state, save_state

    buf = BucketBuffer()
    save_state(tmp_path / "s.safetensors", {"buf": buf.state_dict()}, kind="checkpoint")
    other = BucketBuffer()
    other.load_state_dict(load_state(tmp_path / "s.safetensors", kind="checkpoint")["buf"])
    assert len(other) == 0 and other.best_scaled == 0.0
