import pytest
import torch

from policygen.errors import PolicygenError
from policygen.evaluators.fingerprint import FingerprintEvaluator
from policygen.policies.flat_mlp import MLPSpec, forward, init_thetas


def test_shapes_and_fingerprint_is_probing_actions():
    spec = MLPSpec(5, 2, (16, 16))
    ev = FingerprintEvaluator(spec, n_probe=7, hidden=(32, 32))
    thetas = init_thetas(spec, 4)
    assert ev(thetas).shape == (4,)
    fp = ev.fingerprint(thetas)
    assert fp.shape == (4, 7 * 2)
    for i in range(4):
        torch.testing.assert_close(fp[i], forward(spec, thetas[i:i + 1], ev.probes)[0].reshape(-1))
    assert ((ev.probes >= 0) & (ev.probes < 1)).all()  # U[0, 1) init


def test_as_many_probes_as_policies():
    spec = MLPSpec(3, 1, (8,))
    ev = FingerprintEvaluator(spec, n_probe=4, hidden=(16,))
    thetas = init_thetas(spec, 4)  # B == n_probe must not be mistaken for per-policy observations
    assert ev.fingerprint(thetas).shape == (4, 4)
    torch.testing.assert_close(ev.fingerprint(thetas)[1], forward(spec, thetas[1:2], ev.probes)[0, :, 0])


def test_gradients_reach_probes_thetas_and_mlp():
    spec = MLPSpec(3, 1, (8,))
    ev = FingerprintEvaluator(spec, n_probe=5, hidden=(16,))
    thetas = init_thetas(spec, 3).requires_grad_(True)
    ev(thetas).sum().backward()
    assert ev.probes.grad is not None and ev.probes.grad.abs().sum() > 0
    assert thetas.grad is not None and thetas.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in ev.value_parameters())


def test_detached_probes_get_no_gradient_but_the_same_fingerprint():
    spec = MLPSpec(3, 1, (8,))
    ev = FingerprintEvaluator(spec, n_probe=5, hidden=(16,))
    thetas = init_thetas(spec, 3).requires_grad_(True)
    fp = ev.fingerprint(thetas, detach_probes=True)
    torch.testing.assert_close(fp, ev.fingerprint(thetas))
    ev.mlp(fp).sum().backward()
    assert ev.probes.grad is None and thetas.grad.abs().sum() > 0


def test_fits_a_known_function_of_theta():
    """Target: 10 * the policy's mean action on fixed states; V must learn it on unseen thetas."""
    torch.manual_seed(0)
    spec = MLPSpec(3, 1, (8,))
    states = torch.rand(20, 3)

    def target(th):
        return 10 * forward(spec, th, states).mean(dim=(1, 2))

    train, test = init_thetas(spec, 512) * 3, init_thetas(spec, 128) * 3
    y_train, y_test = target(train), target(test)
    ev = FingerprintEvaluator(spec, n_probe=20, hidden=(64, 64))
    opt = torch.optim.Adam(ev.parameters(), lr=3e-3)
    before = (ev(test) - y_test).pow(2).mean().item()
    for _ in range(600):
        idx = torch.randint(0, 512, (64,))
        loss = (ev(train[idx]) - y_train[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = (ev(test) - y_test).pow(2).mean().item()
    assert mse < 0.05 * y_test.var().item(), (mse, y_test.var().item(), before)
    assert mse < 0.05 * before


def test_bad_settings():
    with pytest.raises(PolicygenError, match="n_probe"):
        FingerprintEvaluator(MLPSpec(3, 1), n_probe=0)
    with pytest.raises(PolicygenError, match="hidden"):
        FingerprintEvaluator(MLPSpec(3, 1), hidden=(0,))


def test_probe_init_normal_covers_both_signs():
    torch.manual_seed(0)
    ev = FingerprintEvaluator(MLPSpec(3, 1), n_probe=200, probe_init="normal")
    assert (ev.probes < 0).float().mean() > 0.3
    with pytest.raises(PolicygenError, match="probe_init"):
        FingerprintEvaluator(MLPSpec(3, 1), probe_init="grid")
