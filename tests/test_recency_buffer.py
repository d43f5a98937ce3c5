import numpy as np
import pytest
import torch

from policygen.buffers.recency import RecencyBuffer, recency_probs
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, forward
from policygen.runs.files import load_state, save_state


def _fill(buf, n, start=0):
    for i in range(start, start + n):
        buf.add(torch.full((1, buf.param_dim), float(i)), [i], [i + 0.5], [i + 1], [[-i]])


def test_probabilities_match_formula():
    p = recency_probs(10_000, 1.1)
    k = np.arange(1, 10_001)
    np.testing.assert_allclose(p, (1 / k) ** 1.1 / ((1 / k) ** 1.1).sum())
    assert 0.6 < p[:100].sum() < 0.7  # "the 100 newest get about 65% of the draws"
    np.testing.assert_allclose(recency_probs(4, 0.0), 0.25)


@pytest.mark.parametrize("gen", ["numpy", "torch"])
def test_empirical_sampling_frequencies(gen):
    buf = RecencyBuffer(2, capacity=50, alpha=1.1)
    _fill(buf, 60)  # 10 oldest dropped; newest holds value 59
    rng = np.random.default_rng(0) if gen == "numpy" else torch.Generator().manual_seed(0)
    n = 200_000
    s = buf.sample(n, rng)
    rank = 59 - s["train_return"].numpy().astype(int)  # 0 = newest
    freq = np.bincount(rank, minlength=50) / n
    p = recency_probs(50, 1.1)
    assert rank.max() < 50
    # within 4 binomial standard deviations for every rank
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4)


def test_fifo_and_fields():
    buf = RecencyBuffer(3, capacity=5)
    _fill(buf, 7)
    assert len(buf) == 5
    newest = buf.gather(buf.newest_indices())
    np.testing.assert_array_equal(newest["train_return"].numpy(), [6, 5, 4, 3, 2])
    np.testing.assert_array_equal(newest["return"].numpy(), [6.5, 5.5, 4.5, 3.5, 2.5])
    np.testing.assert_array_equal(newest["length"].numpy(), [7, 6, 5, 4, 3])
    np.testing.assert_array_equal(newest["command"][:, 0].numpy(), [-6, -5, -4, -3, -2])
    assert torch.equal(newest["theta"][:, 0], torch.tensor([6.0, 5, 4, 3, 2]))
    # a batch larger than the capacity keeps its newest rows
    buf.add(torch.arange(8.0).unsqueeze(1).expand(8, 3), np.arange(8), np.arange(8), np.ones(8), np.zeros(8))
    np.testing.assert_array_equal(buf.gather(buf.newest_indices())["train_return"].numpy(), [7, 6, 5, 4, 3])


def test_seeded_and_state_roundtrip(tmp_path):
    buf = RecencyBuffer(4, capacity=30, alpha=1.1, dtype=torch.float16)
    _fill(buf, 45)
    path = tmp_path / "b.safetensors"
    save_state(path, {"buf": buf.state_dict()}, kind="test")
    other = RecencyBuffer(4, capacity=30, dtype=torch.float16)
    other.load_state_dict(load_state(path, kind="test")["buf"])
    a = buf.sample(100, torch.Generator().manual_seed(3))
    b = other.sample(100, torch.Generator().manual_seed(3))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _fill(buf, 3, 100)
    _fill(other, 3, 100)
    assert torch.equal(buf.sample(20, np.random.default_rng(1))["theta"],
                       other.sample(20, np.random.default_rng(1))["theta"])


def test_errors():
    with pytest.raises(PolicygenError, match="empty"):
        RecencyBuffer(2).sample(3, np.random.default_rng(0))
    with pytest.raises(PolicygenError, match="capacity"):
        RecencyBuffer(2, capacity=0)
    with pytest.raises(PolicygenError, match="1000-parameter"):
        RecencyBuffer(2).load_state_dict(RecencyBuffer(1000).state_dict())


def test_sample_by_return_is_even_over_return_bins():
    buf = RecencyBuffer(2, capacity=200, alpha=1.1)
    # 100 policies at return 0, 2 at 50, 98 at 100: recency would almost never draw the middle pair
    for r in [0.0] * 100 + [50.0] * 2 + [100.0] * 98:
        buf.add(torch.full((1, 2), r), [r], [r], [1], [[r]])
    s = buf.sample_by_return(30_000, torch.Generator().manual_seed(0), bins=4)
    r = s["train_return"].numpy()
    for value in (0.0, 50.0, 100.0):  # three non-empty bins of four, a third of the draws each
        assert abs((r == value).mean() - 1 / 3) < 0.02
    np.testing.assert_array_equal(s["theta"][:, 0].numpy(), r)  # theta and return come from the same entry
    assert set(buf.sample_by_return(5, torch.Generator().manual_seed(1))["train_return"].tolist()) <= {0, 50, 100}
    with pytest.raises(PolicygenError, match="empty buffer"):
        RecencyBuffer(2).sample_by_return(1, torch.Generator())


def test_rebasing_buffer_hands_out_policies_that_act_as_when_they_ran():
    spec = MLPSpec(3, 2, hidden=(8,))
    rng = np.random.default_rng(0)
    norms = [(rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)) for _ in range(3)]
    thetas = torch.randn(3, 2, spec.num_params, generator=torch.Generator().manual_seed(0))
    buf = RecencyBuffer(spec.num_params, capacity=10, dtype=torch.float16, rebase_spec=spec)
    for i in range(3):  # each batch ran under other running statistics
        buf.add(thetas[i], [i, i], [i, i], [1, 1], [[0], [0]], obs_norm=norms[i])
    now = (rng.normal(size=3), rng.uniform(0.5, 2.0, size=3))
    buf.set_obs_norm(*now)
    raw = torch.as_tensor(rng.normal(size=(2, 3)) * 3)
    got = buf.gather(buf.newest_indices())["theta"]  # newest first: batch 2, then 1, then 0
    for k, theta in enumerate(got):
        i, j = 2 - k // 2, 1 - k % 2
        stored = thetas[i, j].half().float()  # what float16 storage keeps
        ran = forward(spec, stored.expand(2, -1), ((raw - norms[i][0]) / norms[i][1]).float())
        acts = forward(spec, theta.expand(2, -1), ((raw - now[0]) / now[1]).float())
        assert torch.allclose(acts, ran, atol=1e-5)
        assert not torch.allclose(theta, stored)
    other = RecencyBuffer(spec.num_params, capacity=10, dtype=torch.float16, rebase_spec=spec)
    other.load_state_dict(buf.state_dict())  # checkpoints keep each entry's statistics
    assert torch.equal(other.gather(other.newest_indices())["theta"], got)
    with pytest.raises(PolicygenError, match="obs_norm"):
        buf.add(thetas[0], [0, 0], [0, 0], [1, 1], [[0], [0]])
    with pytest.raises(PolicygenError, match="without rebase_buffer"):
        other.load_state_dict(RecencyBuffer(spec.num_params).state_dict())
