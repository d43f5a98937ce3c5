import math

import pytest
import torch

from policygen.errors import PolicygenError
from policygen.generators.hypernetwork import HyperNetwork
from policygen.policies.flat_mlp import MLPSpec, forward, unflatten

ARCHS = [
    MLPSpec(11, 3, (256, 256)),  # Hopper, the paper's policy
    MLPSpec(4, 1, (64,)),  # one hidden layer: no "hidden" type
    MLPSpec(5, 2, (20, 30, 7)),  # widths that do not divide by the chunk
    MLPSpec(3, 2, ()),  # linear policy: one layer, first and last
]
SMALL = dict(hidden=(32, 32))


@pytest.mark.parametrize("spec", ARCHS, ids=lambda s: s.describe())
def test_shapes_and_policy_runs(spec):
    g = HyperNetwork(spec, **SMALL)
    thetas = g(torch.rand(5, 1))
    assert thetas.shape == (5, spec.num_params)
    assert torch.isfinite(thetas).all()
    acts = forward(spec, thetas, torch.randn(7, spec.obs_dim))
    assert acts.shape == (5, 7, spec.act_dim)


def test_paper_sizes():
    spec = MLPSpec(11, 3, (256, 256))
    g = HyperNetwork(spec)
    assert g.num_tiles == 16 + 256 + 16  # the 288 chunks of the paper
    n = sum(p.numel() for p in g.parameters())
    assert 0.5e6 < n < 0.56e6  # "~0.53M parameters"
    u = HyperNetwork(spec, chunk=32, embed_dim=32, hidden=(512, 512), output_scaling=False)
    assert u(torch.rand(2, 1)).shape == (2, spec.num_params)
    assert 2.4e6 < sum(p.numel() for p in u.parameters()) < 2.6e6  # UDRLPG's "~2.5M"


def test_batch_rows_independent_and_command_matters():
    g = HyperNetwork(MLPSpec(4, 1, (32, 32)), **SMALL)
    c = torch.tensor([[0.0], [0.5], [1.0]])
    thetas = g(c)
    for i in range(3):
        torch.testing.assert_close(g(c[i:i + 1])[0], thetas[i], rtol=1e-5, atol=1e-6)
    assert (thetas[0] - thetas[2]).abs().max() > 1e-4


def test_tiles_land_in_the_flat_layout():
    """W[o, i] of a hidden layer is entry (o % chunk, i % chunk) of tile (o // chunk, i // chunk)."""
    spec = MLPSpec(3, 2, (10, 12))
    chunk = 4
    g = HyperNetwork(spec, chunk=chunk, output_scaling=False, **SMALL)
    c = torch.tensor([[0.3]])
    (w1, b1), (w2, b2), (w3, b3) = unflatten(spec, g(c))
    lay = g.plan[1]  # hidden: 12 x 10 -> 3 x 3 tiles of 4 x 4, cropped
    assert (lay.grid_out, lay.grid_in) == (3, 3)
    raw_w = g.weight_nets["hidden"](g.embeddings[lay.tiles], c)[0].reshape(3, 3, chunk, chunk)
    raw_b = g.bias_nets["hidden"](g.embeddings[lay.tiles], c)[0].reshape(3, 3, chunk)
    for o in range(12):
        for i in range(10):
            assert torch.isclose(w2[0, o, i], raw_w[o // chunk, i // chunk, o % chunk, i % chunk])
        # biases proposed by the tiles along the input dimension are averaged
        assert torch.isclose(b2[0, o], raw_b[o // chunk, :, o % chunk].mean(), atol=1e-6)
    # first layer: tiles of chunk x obs_dim along the outputs only
    raw1 = g.weight_nets["input"](g.embeddings[g.plan[0].tiles], c)[0].reshape(3, chunk, 3)
    torch.testing.assert_close(w1[0], raw1.reshape(12, 3)[:10])
    assert w3.shape == (1, 2, 12) and b3.shape == (1, 2)


def test_gradients_reach_embeddings_and_every_net():
    g = HyperNetwork(MLPSpec(5, 2, (20, 30)), chunk=8, **SMALL)
    g(torch.rand(3, 1)).pow(2).sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # every tile's embedding is used
    assert (g.embeddings.grad.abs().sum(dim=1) > 0).all()


def test_init_scale_follows_fan_in():
    spec = MLPSpec(11, 3, (256, 64))
    torch.manual_seed(0)
    layers = unflatten(spec, HyperNetwork(spec)(torch.rand(8, 1)).detach())
    ratios = [w.std().item() * math.sqrt(w.shape[-1]) for w, _ in layers]
    # with output scaling, std(W) * sqrt(fan_in) is the same order for every layer (~0.2)
    assert all(0.05 < r < 1.0 for r in ratios), ratios
    assert max(ratios) / min(ratios) < 3
    raw = unflatten(spec, HyperNetwork(spec, output_scaling=False)(torch.rand(8, 1)).detach())
    stds = [w.std().item() for w, _ in raw]
    assert max(stds) / min(stds) < 3  # without it the scale ignores the fan-in
    assert stds[1] * math.sqrt(256) > 3 * ratios[1]


def test_command_dim_and_bad_inputs():
    spec = MLPSpec(4, 1, (16,))
    g = HyperNetwork(spec, command_dim=3, **SMALL)
    assert g(torch.rand(2, 3)).shape == (2, spec.num_params)
    with pytest.raises(PolicygenError, match="shape"):
        g(torch.rand(2, 1))
    with pytest.raises(PolicygenError, match="chunk"):
        HyperNetwork(spec, chunk=0)
    with pytest.raises(PolicygenError, match="bias"):
        HyperNetwork(MLPSpec(4, 1, (16,), bias=False))
    g1 = HyperNetwork(spec, **SMALL)
    assert g1(torch.rand(4)).shape == (4, spec.num_params)  # (B,) accepted for scalar commands


def test_init_std_sets_the_raw_output_scale():
    spec = MLPSpec(11, 3, (64, 64))
    torch.manual_seed(0)
    g = HyperNetwork(spec, chunk=16, hidden=(32, 32), output_scaling=False, init_std=0.5)
    layers = unflatten(spec, g(torch.linspace(0, 1, 5).unsqueeze(1)).detach())
    for w, _b in layers:
        assert 0.3 < w.std().item() < 0.8
    with pytest.raises(PolicygenError, match="init_std"):
        HyperNetwork(spec, init_std=0.0)
