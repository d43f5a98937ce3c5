import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from policygen.envs.stats import RunningStats


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_welford_merges_equal_numpy(sizes, seed):
    rng = np.random.default_rng(seed)
    chunks = [rng.normal(rng.uniform(-100, 100), rng.uniform(0.01, 50), size=(n, 3)) for n in sizes]
    stats = RunningStats(3)
    for c in chunks:
        stats.update(c)
    data = np.concatenate(chunks)
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.var, data.var(axis=0), rtol=1e-9, atol=1e-12)
    assert stats.count == len(data)


def test_merge_of_two_stats_equals_stats_of_union():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 2)), rng.normal(5, 3, size=(1, 2))
    s1, s2 = RunningStats(2), RunningStats(2)
    s1.update(a)
    s2.update(b)
    s1.merge_stats(s2)
    np.testing.assert_allclose(s1.var, np.concatenate([a, b]).var(axis=0), rtol=1e-12)


def test_single_sample_and_constant_dims_do_not_divide_by_zero():
    s = RunningStats(2)
    s.update(np.array([[1.0, 2.0]]))
    assert np.all(s.std == 1.0)


def test_state_dict_round_trip():
    s = RunningStats(3)
    s.update(np.random.default_rng(1).normal(size=(10, 3)))
    t = RunningStats(3)
    t.load_state_dict(s.state_dict())
    assert t.count == s.count and np.array_equal(t.mean, s.mean) and np.array_equal(t.m2, s.m2)
