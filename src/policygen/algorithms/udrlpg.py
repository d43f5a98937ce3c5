"""UDRLPG: Upside-Down RL with Policy Generators (Di Ventura et al., arXiv 2501.16288).

GoGePo without the evaluator. The generator ``G(c) -> theta`` is regressed on hindsight pairs: a policy
theta that achieved (scaled) return c is a correct answer to the command c. The loop, top to bottom:

1. warm-up: ``warmup_episodes`` episodes of ``G(1.0)`` fill the buffer (and fix a learned return range);
2. each iteration: ``updates`` Adam steps on ``MSE(G(c_i), theta_i)`` over buffer draws ``(c_i, theta_i)``;
3. command ``c* = best scaled return seen``; roll out ``G(c*) + sigma * eps`` (``policies_per_iteration``
   of them, in one engine call); store ``(return, theta)`` in the return-bucket buffer.

Returns are scaled to ``(R - min) / (max - min)``. A hand-set range (the paper's, for known tasks) stays
fixed and the buffer grows buckets above 1; a learned range starts at the warm-up returns and doubles its
width whenever a return exceeds it, so commands stay in [0, 1] (doubling merges buckets pairwise).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from policygen.algorithms.base import Algorithm, adam
from policygen.buffers.buckets import REPLACEMENTS, WEIGHTINGS, BucketBuffer, FifoBuffer
from policygen.envs.make import RETURN_CONVENTIONS, EnvInfo
from policygen.errors import PolicygenError
from policygen.generators.cvae import ConditionalVAEGenerator
from policygen.generators.hypernetwork import HyperNetwork
from policygen.policies.flat_mlp import NOISE_SCALINGS, MLPSpec, noise_scales, rebase_inputs
from policygen.rollout.engine import RolloutEngine
from policygen.runs.files import load_optimizer_state, optimizer_state

HAND_SET_RANGES = {"Swimmer": (-100.0, 365.0), "Hopper": (-100.0, 3000.0),
                   "InvertedPendulum": (0.0, 1000.0), "MountainCarContinuous": (-100.0, 100.0)}
"""Raw-return ranges set by hand in the official code (METHODS.md); Hopper's excludes the survival bonus."""
GENERATORS = ("deterministic", "cvae")
COMMAND_GROUPS = ("seen bucket", "never-filled bucket", "above range", "below range", "held-out band")
"""Labels of ``UDRLPG.command_groups``: where a command falls relative to the final buffer."""


@dataclass
class UDRLPGConfig:
    """Settings of UDRLPG; defaults are the official code's (the ``paper`` preset)."""

    policy_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the generated tanh MLP policy."""
    chunk: int = 32
    """Hypernetwork tile side in neurons."""
    embed_dim: int = 32
    """Size of each tile's learned embedding z."""
    generator_hidden: tuple[int, ...] = (512, 512)
    """Hidden widths of the hypernetwork's weight and bias MLPs."""
    output_scaling: bool = False
    """Scale generated layers by 2/sqrt(fan_in) (GoGePo does; UDRLPG does not)."""
    learning_rate: float = 2e-6
    """Adam learning rate of the generator."""
    batch_size: int = 24
    """Buffer draws (c_i, theta_i) per Adam step."""
    update_repeats: int = 8
    """Adam steps per iteration (the paper: per episode)."""
    rollout_repeats: int = 1
    """Noisy policies G(c*) + sigma*eps rolled out per iteration, all in one engine call."""
    rollout_steps: int = 0
    """If > 0: roll out more policies while episodes are short, about this many env steps per iteration
    (from the last iteration's mean episode length), between ``rollout_repeats`` and 4x the engine's slots.
    Keeps update cost per env step bounded; 0 (official) always rolls out ``rollout_repeats``."""
    noise_policy: float = 0.1
    """sigma: std of the parameter-space exploration noise added to every generated weight."""
    noise_scaling: str = "uniform"
    """uniform: sigma on every weight (the paper); fan_in: sigma / sqrt(fan_in) per layer (flat_mlp.noise_scales)."""
    noise_subspace: int = 0
    """If > 0: the exploration noise lives in a fixed random subspace of this many directions (eps = z B, z
    ~ N(0, I_k), B a seeded k x P Gaussian matrix scaled by 1/sqrt(k), so each weight's noise std is still
    sigma); 0 (the paper): independent noise on every weight. Stored policies of one return region then differ
    in k numbers, not P, so their mean, which G regresses to, estimates the direction that earned the return."""
    noise_free_spread: int = 0
    """How many of each iteration's policies (at most all but one) are G(c) itself, without noise, at commands
    c drawn uniformly between the lowest and the best return seen (0: the paper, every policy G(c*) + noise).
    Their hindsight pairs (R, G(c)) lie in G's own function class, so G can fit them exactly, where it can only
    fit the mean of noisy policies (that mean does not earn their returns). Measured on InvertedPendulum (4 of
    16, seeds 0-4, 300k steps): mean calibration MAE 20% against `fast`'s 28%, no seed meeting both targets;
    on Swimmer (seeds 0-2, 3M) 300 on 1 of 3 seeds, MAE 30-42% (bench/results/udrlpg-noise-free-spread)."""
    confirm_episodes: int = 0
    """If > 0: a policy whose one training episode beats the best return stored so far (and every warm-up
    policy) is run this many more episodes, and its stored return (its command label, and so c*) is the mean
    of them all; the extra episodes count as env steps. 0 (official): one episode labels every policy, so c*
    is the luckiest episode ever seen. On Hopper the top labels do not hold (bench/results/stale-buffer.md: the 8
    best, labelled 1830 on average, earn 763), partly from luck and mostly from stale statistics (rebase_buffer)."""
    rebase_buffer: bool = False
    """Keep every stored policy the same function of the raw observation while the running observation
    statistics move (``flat_mlp.rebase_inputs`` rewrites the first layers after each rollout). False
    (official): a stored theta is read through the newest statistics, so an old policy is a different policy
    under its old label: on Hopper at 3M steps the 30 oldest stored policies above 300 (labels mean 705) earn
    60 now, the 30 newest (543) earn 472 (bench/results/stale-buffer.md), and the top buckets, which few new
    policies reach, keep stale ones."""
    rebase_after: int = 0
    """With ``rebase_buffer``: re-base only rollouts that start at or after this many env steps. The first
    statistics come from a few falling warm-up episodes (Hopper: std 0.01-0.11 on inputs 0-4; by 100k steps
    inputs 0, 3, 4 and 10 have grown 3-10x), and re-basing through that growth inflates the stored first layers
    column by column (Hopper seed 0 at 100k: RMS 0.4-0.7 on those inputs against 0.16-0.20 without), and G
    generates them (bench/results/udrlpg-hopper-rebase-after)."""
    freeze_stats_after: int = 0
    """Stop updating the running observation statistics once this many env steps are done (0: never, the
    official). After it stored policies cannot go stale, without re-basing them."""
    generator: str = "deterministic"
    """``deterministic`` (the paper's G(c), regressed with MSE) or ``cvae``, the optional conditional-VAE
    variant for multimodal return regions (``generators/cvae.py``): G(c, z), trained with a KL term; its
    training rollouts each draw z from the prior, while evaluation, sweeps and ``generate`` use z = 0."""
    cvae_latent: int = 8
    """Size of the CVAE's latent z. The official variant's 512 made G ignore the command on InvertedPendulum
    (every command gave the 1000 policy; 8 kept it: docs/udrlpg.md)."""
    cvae_kl_weight: float = 1e-4
    """Weight of KL(q(z | theta, c) || N(0, I)) (nats per policy) beside the reconstruction MSE (mean per
    parameter, ~2e-3 on InvertedPendulum with sigma 0.05): small, or the latent is not worth its KL."""
    cvae_probes: int = 64
    """Fixed N(0, I) probing states whose actions the CVAE's encoder reads."""
    warmup_runs: int = 10
    """Warm-up episodes of G(1.0) before the first update."""
    warmup_noise: bool = False
    """Add the exploration noise to warm-up policies (the official warm-up runs G(1.0) unchanged)."""
    buffer: str = "buckets"
    """``buckets`` (the paper's return-bucket buffer) or ``fifo`` (the variance ablation)."""
    n_buckets: int = 800
    """Buckets over the scaled return range [0, 1]."""
    bucket_max_size: int = 1
    """Policies a bucket holds at most (really: the official code's 1 kept 2)."""
    bucket_replace: str = "reject"
    """Full bucket: ``newest`` replaces its oldest policy, ``reject`` (official) drops the newcomer."""
    bucket_weighting: str = "exp"
    """Bucket draw weight by rank among non-empty buckets: exp, reciprocal or uniform."""
    bucket_weighting_scaling: float = 0.3
    """The 0.3 of the exp weighting exp(0.3 * (rank - n))."""
    bucket_uniform_mix: float = 0.0
    """Share of the bucket probability spread evenly over the non-empty buckets (0: the paper's weighting
    alone). The rank weighting trains G almost only on the top buckets, so G(low command) is never fitted."""
    bucket_max_age: int = 0
    """If > 0: a stored policy is dropped once this many newer policies have arrived, and the command c* is
    the best return still held. 0 (the paper): c* is the best return ever seen, and the top buckets, which
    few later policies reach, keep their policies for good, though the observation statistics move and they
    act differently (bench/results/stale-buffer.md); on Hopper c* then stays at one old, lucky label while
    G(c*) earns a few hundred (udrlpg-hopper-s0: c* 2154 from 800k to 2.1M steps, evaluations 613-777 from 900k).
    1000 (``fast``) on Hopper seeds 0-2, one machine: last-20 mean 1337 / 1521 / 1562 against 900 / 1085 / 1074
    (bench/results/udrlpg-bucket-max-age)."""
    fifo_size: int = 800
    """Policies the FIFO ablation buffer keeps (newest first)."""
    return_range: tuple[float, ...] = ()
    """(min, max) raw return mapped to scaled [0, 1]; empty: hand-set if ``hand_set_range``, else learned."""
    hand_set_range: bool = True
    """Use the official hand-set range for InvertedPendulum, Swimmer, Hopper, MountainCarContinuous."""
    return_convention: str = "no_survival_bonus"
    """Return that commands and the buffer use: ``standard`` or ``no_survival_bonus`` (official)."""
    holdout_band: tuple[float, ...] = ()
    """(lo, hi) fractions of the scaled return range, 0 <= lo < hi <= 1: policies whose return falls in
    [lo, hi] are never stored (counted in ``held_out``), so commands there are unseen returns. Empty: off.
    Needs a fixed return range (``return_range`` or a hand-set one): a learned range moves the band."""

    def __post_init__(self) -> None:
        if int(self.noise_subspace) != self.noise_subspace or self.noise_subspace < 0:
            raise PolicygenError(f"udrlpg noise_subspace must be an integer >= 0, got {self.noise_subspace!r}")
        if int(self.noise_free_spread) != self.noise_free_spread or self.noise_free_spread < 0:
            raise PolicygenError(f"udrlpg noise_free_spread must be an integer >= 0, got {self.noise_free_spread!r}")
        positive = {"chunk": self.chunk, "embed_dim": self.embed_dim, "batch_size": self.batch_size,
                    "rollout_repeats": self.rollout_repeats, "warmup_runs": self.warmup_runs,
                    "n_buckets": self.n_buckets, "bucket_max_size": self.bucket_max_size,
                    "fifo_size": self.fifo_size, "cvae_latent": self.cvae_latent, "cvae_probes": self.cvae_probes}
        for name, v in positive.items():
            if int(v) != v or v < 1:
                raise PolicygenError(f"udrlpg {name} must be an integer >= 1, got {v!r}")
        for name in ("rebase_after", "freeze_stats_after"):
            v = getattr(self, name)
            if int(v) != v or v < 0:
                raise PolicygenError(f"udrlpg {name} must be an integer >= 0 (env steps), got {v!r}")
        if (self.rollout_steps < 0 or self.update_repeats < 0 or not self.learning_rate > 0
                or not self.noise_policy >= 0 or int(self.confirm_episodes) != self.confirm_episodes
                or self.confirm_episodes < 0):
            raise PolicygenError(f"udrlpg needs rollout_steps >= 0, update_repeats >= 0, learning_rate > 0, "
                                 f"noise_policy >= 0, confirm_episodes an integer >= 0; got {self.rollout_steps}, "
                                 f"{self.update_repeats}, {self.learning_rate}, {self.noise_policy}, "
                                 f"{self.confirm_episodes}")
        if not self.cvae_kl_weight >= 0:
            raise PolicygenError(f"udrlpg cvae_kl_weight must be >= 0, got {self.cvae_kl_weight!r}")
        if int(self.bucket_max_age) != self.bucket_max_age or self.bucket_max_age < 0:
            raise PolicygenError(f"udrlpg bucket_max_age must be an integer >= 0 (0: keep policies until "
                                 f"replaced), got {self.bucket_max_age!r}")
        if not 0.0 <= self.bucket_uniform_mix <= 1.0:
            raise PolicygenError(f"udrlpg bucket_uniform_mix must be in [0, 1], got {self.bucket_uniform_mix!r}")
        choices = {"buffer": (self.buffer, ("buckets", "fifo")), "generator": (self.generator, GENERATORS),
                   "bucket_replace": (self.bucket_replace, REPLACEMENTS),
                   "bucket_weighting": (self.bucket_weighting, WEIGHTINGS),
                   "return_convention": (self.return_convention, RETURN_CONVENTIONS),
                   "noise_scaling": (self.noise_scaling, NOISE_SCALINGS)}
        for name, (v, ok) in choices.items():
            if v not in ok:
                raise PolicygenError(f"udrlpg {name} {v!r} is not one of {list(ok)}")
        r = tuple(float(x) for x in self.return_range)
        if r and (len(r) != 2 or not all(map(math.isfinite, r)) or r[0] >= r[1]):
            raise PolicygenError(f"udrlpg return_range must be empty or two finite numbers min < max, "
                                 f"got {r}")
        self.return_range = r
        band = tuple(float(x) for x in self.holdout_band)
        if band and (len(band) != 2 or not 0.0 <= band[0] < band[1] <= 1.0):
            raise PolicygenError(f"udrlpg holdout_band must be empty or two fractions 0 <= lo < hi <= 1 "
                                 f"(e.g. 0.4,0.6), got {band}")
        self.holdout_band = band


PAPER = dict(learning_rate=2e-6, batch_size=24, update_repeats=8, rollout_repeats=1, noise_policy=0.1,
             warmup_runs=10, n_buckets=800, bucket_max_size=1, bucket_replace="reject", chunk=32,
             embed_dim=32, generator_hidden=(512, 512), output_scaling=False, hand_set_range=True,
             return_convention="no_survival_bonus")
# fast: tuned on InvertedPendulum-v5 with 2 CPU cores (bench/RESULTS-udrlpg.md). Why each change:
# - many noisy policies per engine call (16, more while episodes are short) amortise the generator updates;
# - 64 steps at lr 1e-3 per iteration let G catch up with the buffer in a few dozen iterations;
# - sigma 0.05: at 0.1 most neighbours of a good policy fail, so the buffer fills with lucky one-offs;
# - buckets of 8 (newest kept): G(c*) regresses on the mean of 8 recent successes, not one lucky episode;
# - exp weighting 1.0: with 0.3 a lone lucky policy in the next bucket down pulls G(c*) almost as hard as
#   the whole top bucket, and G, smooth in c, cannot separate commands 1/800 apart;
# - a smaller generator MLP (256, 256): ~2x cheaper updates (512-512 was not re-tested at these settings);
# - no rebase_buffer (on from e8ccf74 to 2026-12-05): it held Hopper seed 2's good policies (final 1518 against
#   52), but with it seeds 0 and 1 never learned to hop in 3M steps (best 375 / 261; without it, same machine
#   and code, 2400 / 3141: bench/results/udrlpg-hopper-rebase-ab/README.md).
# - bucket_max_age 1000: c* is the best return still held, not one old lucky record G never earns again
#   (Hopper seeds 0-2, 3M steps, one machine: last-20 mean 1337 / 1521 / 1562 against 900 / 1085 / 1074 without it;
#   Swimmer seed 0 kept its gait, final 357 against 60; the pendulum unchanged: bench/results/udrlpg-bucket-max-age).
FAST = dict(PAPER, learning_rate=1e-3, update_repeats=64, rollout_repeats=16, rollout_steps=2000,
            noise_policy=0.05, warmup_noise=True, bucket_max_size=8, bucket_replace="newest",
            bucket_weighting_scaling=1.0, generator_hidden=(256, 256), hand_set_range=False,
            bucket_max_age=1000)


class UDRLPG(Algorithm):
    """Upside-down policy generator: hindsight regression of G(return) onto the policies that got it."""

    name = "udrlpg"
    Config = UDRLPGConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": PAPER, "fast": FAST}
    default_preset = "fast"

    def __init__(self, config: UDRLPGConfig, info: EnvInfo, seed: int):
        self.config, self.info, self.seed = config, info, int(seed)
        self.spec = MLPSpec(info.obs_dim, info.act_dim, hidden=config.policy_hidden,
                            action_high=info.action_high)
        self.noise_scale = noise_scales(self.spec, config.noise_scaling)
        self.noise_basis = None
        if config.noise_subspace > 0:
            basis_rng = torch.Generator().manual_seed(self.seed + 3)
            k = int(config.noise_subspace)
            self.noise_basis = torch.randn(k, self.spec.num_params, generator=basis_rng) / math.sqrt(k)
        self.return_convention = config.return_convention
        with torch.random.fork_rng(devices=[]):  # seed the generator's init without touching global state
            torch.manual_seed(self.seed)
            if config.generator == "cvae":
                self.gen = ConditionalVAEGenerator(self.spec, config.cvae_latent, config.chunk, config.embed_dim,
                                                   config.generator_hidden, config.output_scaling,
                                                   n_probe=config.cvae_probes)
            else:
                self.gen = HyperNetwork(self.spec, command_dim=1, chunk=config.chunk, embed_dim=config.embed_dim,
                                        hidden=config.generator_hidden, output_scaling=config.output_scaling)
        self.opt = adam(self.gen.parameters(), config.learning_rate)
        self.noise = torch.Generator().manual_seed(self.seed + 1)
        self.fixed_range = self._fixed_range()
        if config.holdout_band and self.fixed_range is None:
            raise PolicygenError(f"udrlpg holdout_band {config.holdout_band} needs a fixed return range: set "
                                 f"return_range=MIN,MAX (or hand_set_range=true for a task that has one); a "
                                 f"learned range grows during training and would move the band")
        self.buffer: BucketBuffer | FifoBuffer | None = None
        self.held_out = 0
        """Policies not stored because their return fell in ``holdout_band``."""
        self.episodes = 0
        self.last_length = 0.0
        self.lowest_return, self.best_return = math.inf, -math.inf

    def _fixed_range(self) -> tuple[float, float] | None:
        if self.config.return_range:
            return self.config.return_range  # type: ignore[return-value]
        if self.config.hand_set_range:
            return HAND_SET_RANGES.get(self.info.env_id.split("-")[0])
        return None

    def _make_buffer(self, r_min: float, r_max: float) -> BucketBuffer | FifoBuffer:
        c, seed = self.config, self.seed + 2
        if c.buffer == "fifo":
            return FifoBuffer(r_min, r_max, size=c.fifo_size, seed=seed, n_bins=c.n_buckets)
        return BucketBuffer(r_min, r_max, n_buckets=c.n_buckets, capacity=c.bucket_max_size,
                            replace=c.bucket_replace, weighting=c.bucket_weighting,
                            exp_coef=c.bucket_weighting_scaling, uniform_mix=c.bucket_uniform_mix, seed=seed,
                            max_age=c.bucket_max_age)

    # --- the loop ---------------------------------------------------------------------------------
    def iterate(self, engine: RolloutEngine) -> dict:
        if self.buffer is None:
            return self._warmup(engine)
        loss = self.fit(self.config.update_repeats)
        command = self.buffer.best_scaled
        raw_command = float(self.buffer.unscale(command))  # before _store: a learned range may rescale
        n = self._population(engine.num_envs)
        n_spread = min(self.config.noise_free_spread, n - 1)
        thetas = self._noisy(command, n - n_spread, self.config.noise_policy)
        if n_spread:
            thetas = torch.cat([thetas, self._spread(n_spread)])
        before, started = _normalisation(engine), engine.env_steps
        res = engine.evaluate(thetas, episodes=1, update_stats=self._stats_move(started))
        thetas = self._rebased(engine, thetas, before, started)
        returns = self._store(thetas, *self._confirmed(engine, thetas, res), res.lengths)
        return {**self._metrics(returns, len(thetas)), "command": raw_command, "loss": loss}

    def _stats_move(self, started: int) -> bool:
        """Whether a rollout starting at env step ``started`` updates the observation statistics."""
        return not 0 < self.config.freeze_stats_after <= started

    def _rebased(self, engine: RolloutEngine, thetas: torch.Tensor, before, started: int) -> torch.Tensor:
        """With ``rebase_buffer`` (from ``rebase_after`` env steps on): this rollout's ``thetas`` and every stored
        policy rewritten to act, under the statistics the rollout has just updated, as they did under
        ``before``; else ``thetas`` unchanged."""
        if not self.config.rebase_buffer or started < self.config.rebase_after:
            return thetas
        now = _normalisation(engine)
        rebase = functools.partial(rebase_inputs, self.spec, old=before, new=now)
        if self.buffer is not None:
            self.buffer.map_heads(self.spec.input_layer_size, rebase)
        return rebase(thetas)

    def _confirmed(self, engine: RolloutEngine, thetas: torch.Tensor, res) -> tuple[np.ndarray, np.ndarray]:
        """Training returns and failure flags, record candidates re-run (``confirm_episodes``) and averaged."""
        returns, failed, k = res.train_returns.copy(), res.failed.copy(), self.config.confirm_episodes
        cand = np.flatnonzero(~failed & (returns > self.buffer.best_return)) if k > 0 else []
        if len(cand):
            # statistics left as they are, so a policy re-based to them (rebase_buffer) runs as it did
            again = engine.evaluate(thetas[torch.as_tensor(cand)], episodes=k, update_stats=False)
            self.episodes += k * len(cand)
            returns[cand] = (returns[cand] + k * again.train_returns) / (k + 1)
            failed[cand] |= again.failed
        return returns, failed

    def _population(self, slots: int) -> int:
        """Policies this iteration: ``rollout_repeats``, more while episodes are short (``rollout_steps``)."""
        n = self.config.rollout_repeats
        if self.config.rollout_steps > 0 and self.last_length > 0:
            # up to 4 waves of the engine's slots: 2-step episodes are cheap, generator updates are not
            n = max(n, min(4 * slots, math.ceil(self.config.rollout_steps / self.last_length)))
        return n

    def _warmup(self, engine: RolloutEngine) -> dict:
        sigma = self.config.noise_policy if self.config.warmup_noise else 0.0
        thetas = self._noisy(1.0, self.config.warmup_runs, sigma)
        # with confirmation every warm-up policy is a record candidate: a lucky one would pin c* for good
        episodes = 1 + self.config.confirm_episodes
        before, started = _normalisation(engine), engine.env_steps
        res = engine.evaluate(thetas, episodes=episodes, update_stats=self._stats_move(started))
        self.episodes += len(thetas) * (episodes - 1)
        thetas = self._rebased(engine, thetas, before, started)
        ok = res.train_returns[~res.failed]
        if len(ok) == 0:
            raise PolicygenError("every warm-up episode failed (non-finite returns): no return range")
        r_min, r_max = self.fixed_range or (float(ok.min()), float(ok.min()) + max(float(np.ptp(ok)), 1.0))
        self.buffer = self._make_buffer(r_min, r_max)
        returns = self._store(thetas, res.train_returns, res.failed, res.lengths)
        return {**self._metrics(returns, len(thetas)), "command": None, "loss": None}

    @torch.no_grad()
    def _noisy(self, command: float, n: int, sigma: float) -> torch.Tensor:
        """``n`` policies ``G(command) + sigma * eps`` (n, P); command scaled. The CVAE's are ``G(command, z_i)``
        with ``z_i`` from the prior, one per policy."""
        c = torch.tensor([[command]], dtype=torch.float32)
        if isinstance(self.gen, ConditionalVAEGenerator):
            base = self.gen(c.expand(n, 1), self.gen.sample_latents(n, self.noise))
        else:
            base = self.gen(c)
        if self.noise_basis is None:
            eps = torch.randn(n, base.shape[1], generator=self.noise)
        else:
            eps = torch.randn(n, self.noise_basis.shape[0], generator=self.noise) @ self.noise_basis
        return base + sigma * self.noise_scale * eps

    @torch.no_grad()
    def _spread(self, n: int) -> torch.Tensor:
        """``n`` noise-free policies G(c) (n, P), c uniform between the lowest and the best return seen (scaled);
        the CVAE's at z = 0, as evaluation uses it."""
        lo = float(self.buffer.scale(self.lowest_return)) if math.isfinite(self.lowest_return) else 0.0
        u = torch.rand(n, 1, generator=self.noise)
        return self.gen(lo + u * (self.buffer.best_scaled - lo))

    def _store(self, thetas: torch.Tensor, train_returns: np.ndarray, failed: np.ndarray,
               lengths: np.ndarray) -> np.ndarray:
        """Store the policies that did not fail, with their returns; the stored returns (raw)."""
        ok = ~failed
        returns = train_returns[ok]
        self.episodes += len(train_returns)
        self.last_length = float(np.mean(lengths))
        if len(returns):
            keep = ~self.in_holdout_band(returns)
            self.held_out += int((~keep).sum())
            # held-out policies never reach the buffer, so neither G's targets nor the command c* see them
            if keep.any():
                self.buffer.add(thetas[torch.as_tensor(ok)][torch.as_tensor(keep)], returns[keep])
            self.lowest_return = min(self.lowest_return, float(returns.min()))
            self.best_return = max(self.best_return, float(returns.max()))
        if self.fixed_range is None:
            while self.buffer.best_scaled > 1.0:  # learned range: double its width, commands stay in [0, 1]
                self.buffer.rescale(self.buffer.r_min + 2.0 * (self.buffer.r_max - self.buffer.r_min))
        return returns

    def fit(self, steps: int) -> float | None:
        """``steps`` Adam steps of ``MSE(G(c_i), theta_i)`` over buffer draws; mean loss (None if 0 steps)."""
        losses = []
        for _ in range(steps):
            commands, thetas = self.buffer.sample(self.config.batch_size)
            if isinstance(self.gen, ConditionalVAEGenerator):
                loss = self.gen.loss(commands.unsqueeze(1), thetas, self.config.cvae_kl_weight, self.noise)[0]
            else:
                loss = F.mse_loss(self.gen(commands.unsqueeze(1)), thetas)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else None

    def _metrics(self, returns: np.ndarray, episodes: int) -> dict:
        has = len(returns) > 0
        return {"episodes": episodes,
                "train_return_mean": float(returns.mean()) if has else None,
                "train_return_max": float(returns.max()) if has else None,
                "best_train_return": self.best_return if math.isfinite(self.best_return) else None}

    # --- using the generator ----------------------------------------------------------------------
    def eval_policy(self) -> tuple[torch.Tensor, float | None]:
        """``G(c*)`` without noise for the best scaled return seen, and ``c*`` in raw return units."""
        if self.buffer is None:
            with torch.no_grad():
                return self.gen(torch.ones(1, 1))[0], None
        c = self.buffer.best_scaled
        with torch.no_grad():
            theta = self.gen(torch.tensor([[c]], dtype=torch.float32))[0]
        return theta, float(self.buffer.unscale(c))

    def generate(self, commands) -> torch.Tensor:
        """Policies for raw-return ``commands (N,)`` (the run's return convention) -> ``thetas (N, P)``.

        Commands below the range minimum act as the minimum (returns are clipped there); commands above
        the best return seen are unseen returns: G extrapolates.
        """
        if self.buffer is None:
            raise PolicygenError("this UDRLPG generator has not finished its warm-up: no return range yet")
        raw = np.asarray(commands, dtype=np.float64).reshape(-1)
        if not np.isfinite(raw).all():
            raise PolicygenError(f"commands must be finite returns, got {raw[~np.isfinite(raw)][:3]}")
        scaled = torch.tensor(self.buffer.scale(raw), dtype=torch.float32).unsqueeze(1)
        with torch.no_grad():
            return self.gen(scaled)

    def seen_return_range(self) -> tuple[float, float]:
        """Lowest and highest training return seen (raw, the run's return convention)."""
        if not math.isfinite(self.best_return):
            raise PolicygenError("this UDRLPG run has not completed an episode yet: no returns seen")
        return self.lowest_return, self.best_return

    def scale_range(self) -> tuple[float, float]:
        """The raw returns (min, max) that map to scaled commands 0 and 1."""
        if self.buffer is None:
            raise PolicygenError("this UDRLPG generator has not finished its warm-up: no return range yet")
        return self.buffer.r_min, self.buffer.r_max

    def holdout_range(self) -> tuple[float, float] | None:
        """The held-out band in raw returns (the run's convention), None when off."""
        if not self.config.holdout_band:
            return None
        lo, hi = self.fixed_range  # type: ignore[misc]  # __init__ refuses a band without a fixed range
        return lo + self.config.holdout_band[0] * (hi - lo), lo + self.config.holdout_band[1] * (hi - lo)

    def in_holdout_band(self, returns) -> np.ndarray:
        """Whether each raw return falls in the held-out band (N,), all False when off."""
        r = np.atleast_1d(np.asarray(returns, dtype=np.float64))
        if not self.config.holdout_band:
            return np.zeros(len(r), dtype=bool)
        lo, hi = self.fixed_range  # type: ignore[misc]
        s = (np.maximum(r, lo) - lo) / (hi - lo)  # the buffer's scaling: a band at 0 takes clipped returns too
        return (s >= self.config.holdout_band[0]) & (s <= self.config.holdout_band[1])

    def stored_return_range(self) -> tuple[float, float]:
        """Lowest and highest raw return held in the buffer now."""
        r = self.buffer.stored_returns() if self.buffer is not None else np.zeros(0)
        if not len(r):
            raise PolicygenError("this UDRLPG buffer is empty: no stored returns to report on")
        return float(r.min()), float(r.max())

    def command_groups(self, commands) -> list[str]:
        """Label each raw command by what the final buffer holds there, one of ``COMMAND_GROUPS``.

        ``held-out band`` wins over the rest; then ``below range`` / ``above range`` (outside the stored
        returns); inside, ``seen bucket`` if the command's bucket holds a policy, else ``never-filled bucket``
        (bucket buffers never empty a bucket, so empty now means never filled; with ``buffer=fifo`` it means
        empty at the end, on a grid of ``n_buckets`` equal bins).
        """
        c = np.atleast_1d(np.asarray(commands, dtype=np.float64))
        lo, hi = self.stored_return_range()
        _, filled = self.buffer.filled(c)
        seen, never, above, below, band = COMMAND_GROUPS
        return np.select([self.in_holdout_band(c), c < lo, c > hi, filled], [band, below, above, seen],
                         never).tolist()

    # --- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"gen": dict(self.gen.state_dict()), "opt": optimizer_state(self.opt),
                "noise": self.noise.get_state(), "episodes": self.episodes, "last_length": self.last_length,
                "lowest_return": self.lowest_return, "best_return": self.best_return, "held_out": self.held_out,
                "buffer": None if self.buffer is None else self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.load_state_dict(state["gen"])
        load_optimizer_state(self.opt, state["opt"])
        self.noise.set_state(state["noise"])
        self.episodes, self.last_length = int(state["episodes"]), float(state["last_length"])
        self.lowest_return, self.best_return = float(state["lowest_return"]), float(state["best_return"])
        self.held_out = int(state.get("held_out", 0))  # checkpoints from before the hold-out option
        self.buffer = None
        if state["buffer"] is not None:
            self.buffer = self._make_buffer(float(state["buffer"]["r_min"]), float(state["buffer"]["r_max"]))
            self.buffer.load_state_dict(state["buffer"])


def _normalisation(engine: RolloutEngine) -> tuple[np.ndarray, np.ndarray]:
    """The (mean, std) the engine normalises observations with now."""
    return engine.obs_stats.mean.copy(), engine.obs_stats.std.copy()


__all__ = ["COMMAND_GROUPS", "HAND_SET_RANGES", "UDRLPG", "UDRLPGConfig"]
