import numpy as np
import pytest
import torch
from torch import nn

from policygen.errors import PolicygenError
from policygen.policies import MLPSpec, forward, init_thetas, to_module
from policygen.policies.flat_mlp import NumpyPolicies, act_numpy, noise_scales, rebase_inputs, unflatten

SPECS = [MLPSpec(11, 3, (256, 256)), MLPSpec(4, 1, (), output="clip", bias=False, action_high=(3.0,)),
         MLPSpec(5, 2, (7, 3, 9), activation="relu", action_high=(2.0, 0.5)), MLPSpec(3, 2, (8,), output="none")]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_layout_is_parameters_to_vector_of_sequential(spec):
    theta = init_thetas(spec, 1, torch.Generator().manual_seed(0))[0]
    net = to_module(spec, theta)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert torch.equal(nn.utils.parameters_to_vector([p for m in linears for p in m.parameters()]), theta)
    obs = torch.randn(6, spec.obs_dim)
    torch.testing.assert_close(net(obs), forward(spec, theta.expand(6, -1), obs))


def test_hopper_parameter_count_matches_paper():
    assert MLPSpec(11, 3).num_params == 69_635
    assert MLPSpec(8, 2).num_params == 68_610  # Swimmer
    assert MLPSpec(4, 1).num_params == 67_329  # InvertedPendulum


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_batched_forward_equals_loop_of_single_forwards(spec):
    thetas = init_thetas(spec, 5, torch.Generator().manual_seed(1))
    obs = torch.randn(5, spec.obs_dim)
    batched = forward(spec, thetas, obs)
    for i in range(5):
        torch.testing.assert_close(batched[i], to_module(spec, thetas[i])(obs[i]))
    shared = torch.randn(7, spec.obs_dim)  # probing states: every policy on the same states
    out = forward(spec, thetas, shared)
    assert out.shape == (5, 7, spec.act_dim)
    torch.testing.assert_close(out[2], to_module(spec, thetas[2])(shared))


def test_output_respects_action_bounds():
    spec = MLPSpec(3, 2, (8,), action_high=(2.0, 0.5))
    a = forward(spec, init_thetas(spec, 4) * 100, torch.randn(4, 3) * 100)
    assert (a.abs() <= torch.tensor([2.0, 0.5]) + 1e-6).all()


def test_gradients_reach_parameters():
    spec = MLPSpec(4, 2, (16, 16))
    thetas = init_thetas(spec, 3).requires_grad_()
    forward(spec, thetas, torch.randn(3, 4)).sum().backward()
    assert thetas.grad is not None and (thetas.grad.abs().sum(dim=1) > 0).all()


def test_wrong_length_is_refused_with_the_expected_length():
    spec = MLPSpec(4, 2, (16,))
    with pytest.raises(PolicygenError, match=f"needs exactly {spec.num_params}"):
        forward(spec, torch.zeros(2, spec.num_params + 1), torch.zeros(2, 4))


@pytest.mark.parametrize("spec", [
    MLPSpec(5, 2, (16, 8), "relu", "tanh", (2.0, 0.5)),
    MLPSpec(5, 2, (), "tanh", "clip", (1.0, 3.0)),
    MLPSpec(5, 2, (7,), "tanh", "none", bias=False),
])
def test_numpy_forward_of_the_engine_equals_torch_forward(spec):
    thetas = init_thetas(spec, 6, torch.Generator().manual_seed(1)) * 3
    obs = torch.randn(6, 5)
    got = act_numpy(spec, thetas.numpy(), obs.numpy())
    assert np.allclose(got, forward(spec, thetas, obs).numpy(), atol=1e-5)


@pytest.mark.parametrize("spec", [MLPSpec(5, 2, (16, 8), "relu", "tanh", (2.0, 0.5)),
                                  MLPSpec(5, 2, (), "tanh", "clip")])
def test_engine_forward_follows_its_weight_rows_after_they_change(spec):
    # the engine refills rows in place as slots take new policies; the prebuilt layer views must see that
    rows = np.zeros((8, spec.num_params), dtype=np.float32)
    policies = NumpyPolicies(spec, rows)
    obs = torch.randn(3, 5)
    for seed in (1, 2):
        rows[:3] = init_thetas(spec, 3, torch.Generator().manual_seed(seed)).numpy() * 3
        want = forward(spec, torch.from_numpy(rows[:3].copy()), obs).numpy()
        assert np.allclose(policies(obs.numpy(), 3), want, atol=1e-5)


def test_engine_forward_refuses_rows_of_another_layout():
    with pytest.raises(PolicygenError, match="float32"):
        NumpyPolicies(MLPSpec(5, 2, ()), np.zeros((4, 11), dtype=np.float32))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_fan_in_noise_scales_each_layer_by_its_fan_in(spec):
    assert torch.equal(noise_scales(spec, "uniform"), torch.ones(spec.num_params))
    layers = unflatten(spec, noise_scales(spec, "fan_in").unsqueeze(0))
    for (w, b), (_, inp) in zip(layers, spec.layer_shapes, strict=True):
        expected = torch.tensor(inp ** -0.5)
        assert torch.allclose(w, expected) and (b is None or torch.allclose(b, expected))


def test_unknown_noise_scaling_is_refused_with_the_choices():
    with pytest.raises(PolicygenError, match="uniform"):
        noise_scales(SPECS[0], "layer")


def test_rebased_policies_act_the_same_under_new_statistics():
    spec = MLPSpec(5, 2, hidden=(8, 6), action_high=(1.0, 2.0))
    g = torch.Generator().manual_seed(0)
    thetas = torch.randn(4, spec.num_params, generator=g, dtype=torch.float64).float()
    rng = np.random.default_rng(1)
    old = (rng.normal(size=5), rng.uniform(0.5, 2.0, size=5))
    new = (rng.normal(size=5), rng.uniform(0.5, 2.0, size=5))
    raw = torch.as_tensor(rng.normal(size=(4, 5)) * 3)
    rebased = rebase_inputs(spec, thetas, old, new)
    before = forward(spec, thetas, ((raw - old[0]) / old[1]).float())
    after = forward(spec, rebased, ((raw - new[0]) / new[1]).float())
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.equal(rebased[:, spec.input_layer_size:], thetas[:, spec.input_layer_size:])
    heads = rebase_inputs(spec, thetas[:, :spec.input_layer_size], old, new)  # the first layers alone
    assert torch.equal(heads, rebased[:, :spec.input_layer_size])
    assert not torch.allclose(before, forward(spec, thetas, ((raw - new[0]) / new[1]).float()), atol=1e-3)


def test_rebase_with_per_row_statistics_equals_one_row_at_a_time():
    spec = MLPSpec(3, 1, hidden=(4,))
    thetas = torch.randn(5, spec.num_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rng = np.random.default_rng(3)
    old = (rng.normal(size=(5, 3)), rng.uniform(0.5, 2.0, size=(5, 3)))  # each row its own statistics
    new = (rng.normal(size=3), rng.uniform(0.5, 2.0, size=3))
    batched = rebase_inputs(spec, thetas, old, new)
    for i in range(5):
        one = rebase_inputs(spec, thetas[i:i + 1], (old[0][i], old[1][i]), new)
        assert torch.allclose(batched[i], one[0], atol=1e-12)
