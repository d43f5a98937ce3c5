import pytest
import torch

from policygen.errors import PolicygenError
from policygen.generators.cvae import ConditionalVAEGenerator
from policygen.policies.flat_mlp import MLPSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _fit(gen, commands, thetas, kl_weight, steps=600, seed=0):
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = gen.loss(commands, thetas, kl_weight, g)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_two_policies_for_one_command_each_get_their_latent():
    """Hindsight MSE fits their mean (neither policy); the CVAE keeps both, and prior draws give one of them."""
    spec = MLPSpec(3, 1, hidden=(8,))
    torch.manual_seed(0)
    gen = ConditionalVAEGenerator(spec, latent_dim=2, chunk=4, embed_dim=4, hidden=(32,), output_scaling=False,
                                  n_probe=16, encoder_hidden=(32,))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(spec.num_params, generator=g), torch.randn(spec.num_params, generator=g)
    thetas, commands = torch.stack([a, b]).repeat(4, 1), torch.full((8, 1), 0.5)
    _fit(gen, commands, thetas, kl_weight=0.1, steps=1500)
    half = float((a - b).norm()) / 2
    with torch.no_grad():
        mu, _ = gen.encode(commands[:2], thetas[:2])
        rec = gen(commands[:2], mu)
        assert float((rec[0] - a).norm()) < 0.3 * half and float((rec[1] - b).norm()) < 0.3 * half
        draws = gen(torch.full((200, 1), 0.5), gen.sample_latents(200, torch.Generator().manual_seed(2)))
        nearest = torch.minimum((draws - a).norm(dim=1), (draws - b).norm(dim=1))
    assert float((nearest < 0.5 * half).float().mean()) > 0.7  # the midpoint itself is at 1.0 * half


def test_zero_latent_is_the_default_and_shapes_are_checked():
    spec = MLPSpec(2, 1, hidden=(4,))
    gen = ConditionalVAEGenerator(spec, latent_dim=3, chunk=2, embed_dim=2, hidden=(8,), output_scaling=True)
    c = torch.tensor([[0.2], [0.7]])
    assert torch.equal(gen(c), gen(c, torch.zeros(2, 3)))
    assert gen(c).shape == (2, spec.num_params)
    with pytest.raises(PolicygenError, match="latents must have shape"):
        gen(c, torch.zeros(2, 4))
    with pytest.raises(PolicygenError, match="latent_dim"):
        ConditionalVAEGenerator(spec, latent_dim=0, chunk=2, embed_dim=2, hidden=(8,), output_scaling=True)
