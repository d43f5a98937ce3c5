"""GoGePo: Goal-Conditioned Generators of Deep Policies (Faccio, Herrmann, Ramesh, Kirsch, Schmidhuber; AAAI 2023).

One iteration, top to bottom (``iterate``):
1. command ``c = best training return seen + drive`` (before any data: ``first_command``);
2. ``theta_i = G(scale(c)) + sigma * eps_i`` for the iteration's policies, all rolled out in one engine call;
   each ``(theta_i, R_i, c)`` goes into the recency buffer;
3. evaluator steps: sample by recency, minimise ``(V(theta) - target(R))^2`` (V and its probing states);
4. generator steps: sample by recency, use the *achieved* returns as commands, minimise
   ``(V(G(scale(R))) - target(R))^2`` through the frozen evaluator.

Presets (both first-class):
- ``paper``: the official defaults (one episode per iteration, 5 evaluator + 20 generator steps of batch 16,
  lr 5e-3 / 2e-6, sigma 0.1, buffer 10k with recency alpha 1.1, 2x256 tanh policy, 200 probing states,
  commands divided by the hand-set return range, V regressed on raw returns, drive +20, survival bonus
  removed from training returns), with the official code's bugs fixed:
  * the update counts are what the config says (the official loops ran 4 evaluator and 19 generator steps);
  * one return convention per run (``return_convention``, "no_survival_bonus" by default): commands, the
    buffer and ``best_train_return`` all use it, and evaluations report the standard Gymnasium return
    alongside (the official code mixed the two in its command-vs-achieved plots);
  * every random draw (noise, buffer sampling, network init) comes from explicit seeded generators that are
    checkpointed, so runs repeat and resume exactly (the official sampling used the unseeded global RNG);
  * observation statistics are exact (the engine's RunningStats; the official Welford update
    underestimated the variance for small n).
- ``fast`` (default): what makes the method practical on 2 CPU cores, each change a config field:
  * 4 to 16 policies per iteration in one engine call, as many as make ~4000 env steps
    (``steps_per_iteration``: short episodes early, few long ones later), one of them G(c) itself without
    noise, and 3 more noise-free ones at commands drawn over the returns seen (``noise_free_policies``,
    ``spread_noise_free``), leaving at least one perturbed (3 of 4 once episodes last 1000 steps): with
    sigma = 0.1 on every weight the noise is far larger than G's output, so V trained on perturbed policies
    alone misjudges the noise-free policies G actually makes, at the command and across the range
    (InvertedPendulum, 3 seeds: 1 noise-free policy reached 1000 on 2 seeds, these 4 on all 3;
    bench/results/gogepo-ip*.md). ``fast-explore``, the default on Swimmer and MountainCarContinuous, caps
    them at a quarter (``noise_free_share``; 1 of 4 at 1000-step episodes): there the first good behaviour
    only exploration finds (bench/results/gogepo-nfshare-*.md). ``fast-fanin`` puts noise sigma / sqrt(fan_in)
    (sigma 1.0) on each layer (``noise_scaling``): uniform 0.1 makes each hidden unit's pre-activation noise ~1.6
    and the perturbed policies bang-bang (bench/results/gogepo-fanin-*.md); ``fast-heads``, the default on
    Hopper, adds five value heads (``evaluator_heads``, ``probes_by_first_head``) for a calibrated generator;
  * fewer generator steps (5 per iteration; a step is ~5x the cost of an evaluator step) at a 50x higher
    lr (1e-4), and more evaluator steps (20, lr 1e-3);
  * returns scaled from data instead of hand-set ranges: G's input is (c - min) / (max - min) over the
    training returns seen, V's target is standardised by the buffer's mean and std (rescaled PopArt-style);
    the drive is 5% of the seen range;
  * the command builds on the best return of the newest 64 policies (``command_window``), so one lucky
    episode does not make G extrapolate far beyond its data;
  * the generator waits for 64 buffered episodes (``generator_warmup``): chasing an untrained V, it can
    drift into saturated policies that all fail alike, a state the noise cannot leave;
  * probing states start N(0, I), where normalised observations lie, instead of U[0, 1);
  * a hindsight anchor (``anchor_weight`` 1): G(R) is also pulled towards the probing actions of the
    buffered policy that achieved R. Without it a pendulum G that chased one lucky 1000 into a policy that
    pushes the cart one way from the first step (every policy, noise-free or perturbed, then earns 2-5)
    never came back: V is flat over such policies and G's loss is ~0. Seeds 1, 3 and 6 ended at 9, 31 and 4;
    with it they reach 1000 (bench/results/gogepo-ip-anchor*.md). ``fast-fanin`` (Hopper) keeps 0: with
    the anchor Hopper seed 0 reached 2500 only at 1.9M (503k without) and seed 1 never (best 2446).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from policygen.algorithms.base import Algorithm, adam
from policygen.buffers.recency import RecencyBuffer
from policygen.envs.make import RETURN_CONVENTIONS, EnvInfo
from policygen.errors import PolicygenError
from policygen.evaluators.fingerprint import FingerprintEvaluator
from policygen.generators.hypernetwork import HyperNetwork
from policygen.policies.flat_mlp import NOISE_SCALINGS, MLPSpec, noise_scales
from policygen.runs.files import load_optimizer_state, optimizer_state

# The official code's hand-set return ranges (rew_min, rew_max), used by return_scaling="paper".
PAPER_RETURN_RANGES = {"Swimmer": (-100.0, 365.0), "Hopper": (-100.0, 3000.0),
                       "InvertedPendulum": (0.0, 1000.0), "MountainCarContinuous": (-100.0, 100.0)}
RETURN_SCALINGS = ("paper", "learned")
BUFFER_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class GoGePoConfig:
    """GoGePo settings; names follow the paper and its official code."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the generated policy (tanh MLP, tanh(out) * action_high)."""
    sigma: float = 0.1
    """Parameter-space exploration noise: theta = G(c) + sigma * eps on every weight."""
    noise_scaling: str = "uniform"
    """uniform: the same sigma on every weight (the paper); fan_in: sigma / sqrt(fan_in) on each layer, so
    sigma is the pre-activation noise per unit of input (see flat_mlp.noise_scales)."""
    policies_per_iteration: int = 1
    """Policies generated and rolled out (one episode each, one engine call) per iteration; the maximum
    when ``steps_per_iteration`` is set."""
    steps_per_iteration: int = 0
    """If > 0, choose the number of policies so an iteration takes about this many env steps (by the mean
    episode length of the previous iteration), between ``min_policies`` and ``policies_per_iteration``:
    long episodes then do not starve the generator of updates per env step."""
    min_policies: int = 1
    """Fewest policies per iteration when ``steps_per_iteration`` is set."""
    noise_free_policies: int = 0
    """How many of the iteration's policies are G(c) itself, without noise (the rest are perturbed). They
    show V what the generator's own outputs achieve: trained on perturbed policies only, V can badly misjudge
    the noise-free policies G makes, whose weights are much smaller than the noise."""
    noise_free_share: float = 1.0
    """At most this share of an iteration's policies are noise-free (at least one, if any): with fixed-length
    episodes (Swimmer; Hopper and InvertedPendulum once they stand) ``steps_per_iteration`` leaves 4
    policies per iteration, and 3 noise-free ones leave 1 perturbed policy per 4 episodes to explore
    (Swimmer, seed 0: 16 at 1M steps with 3 of 4 noise-free; 277 at 600k with 1 of 4)."""
    spread_noise_free: bool = False
    """Noise-free policies after the first are G at commands drawn uniformly over the training returns seen
    (the first stays at the command): V then sees what G's own outputs achieve across the whole range, not
    only at the current command, which is where the generator is judged (calibration, evaluation)."""
    spread_perturbed: float = 0.0
    """Share (on average: rounded at random) of the iteration's perturbed policies whose base is G at a command
    drawn uniformly over the training returns seen, not G at the current command (0: all explore around the
    current command, as the paper). The buffer then also holds policies near what G makes at middle commands,
    so V is trained where G is judged by a calibration sweep (a solved pendulum's buffer is otherwise nearly
    all 0s and 1000s)."""
    generated_command_frac: float = 0.0
    """Share of each generator batch whose commands are not buffer returns but drawn uniformly from
    [min + drive, max + drive] of the returns seen (the official code's "generated" command mode; the
    paper's default, 0, uses only achieved returns). Trains G at and above the commands it is given."""
    generated_command_from: int = 0
    """Env steps before ``generated_command_frac`` takes effect (0: from the start), to let a run climb first
    and calibrate later. Measured on Hopper (0.25 from 1.5M, seeds 0-4): both calibration targets on 1 of 5
    seeds, against 3 of 5 with the share from the start (bench/results/gogepo-hopper-gc025.md)."""
    return_uniform_frac: float = 0.0
    """Share of each generator batch's buffer commands drawn evenly over the buffered returns (bins of
    equal width in return, ``RecencyBuffer.sample_by_return``) instead of by recency (0: the paper). Once a
    task is solved, recency draws are nearly all top returns, and G (with the anchor) is no longer trained
    at the rare middle returns that calibration sweeps over."""
    evaluator_uniform_frac: float = 0.0
    """Share of each evaluator batch drawn evenly over the buffered returns, as ``return_uniform_frac`` does
    for G's commands (0: by recency alone, the paper). Recency draws keep V accurate where G is now; G's
    sweep spans every return seen, and V's errors on G's own policies there are most of a sweep's miss
    (``policygen sweep``'s split). At 0.25 (bench/results/gogepo-evaluator-uniform): Reacher MAE 8.8 -> 6.9% over
    6 seeds; Hopper ``fast-heads`` seeds 0, 1, 3, 4 (AMD EPYC) MAE 13.8 -> 10.9% on average, both targets on 1
    of 4 (without: 0), but a later take-off and a weaker end on seeds 3-4; no gain on the pendulum. Not in a
    preset: the calibration gain is not both targets on most seeds, and the take-off moved later on 2 of 4."""
    anchor_weight: float = 0.0
    """Weight of a hindsight anchor in the generator loss (0: the paper's loss alone): G(R) is also pulled
    towards the probing actions (V's fingerprint, in units of action_high) of the buffered policy that
    achieved R. Through V alone G gets no gradient once every policy fails alike (V is flat there);
    the anchor still points G at the policies that did better."""
    generator_warmup: int = 0
    """Episodes in the buffer before the generator is first updated (V learns alone until then): a G that
    chases an untrained V drifts into saturated policies that all fail alike, from which noise cannot
    recover."""
    evaluator_heads: int = 1
    """Value heads on the shared fingerprint (1: the paper's single V). With K > 1 each head is trained on its own
    buffer draws and G minimises the mean over heads of (V_k(G(c)) - c)^2 = (mean - c)^2 + the heads' variance, so
    G is pulled away from policies where the heads disagree (where V is guessing); predictions use the mean."""
    probes_by_first_head: bool = False
    """With ``evaluator_heads`` > 1: only the first head's loss moves the probing states (the others read them
    detached), so the fingerprint is learned as with a single V. Five heads' pull on the shared probes kept Hopper
    seeds 2, 5, 6 from taking off; with this they all do (the ``fast-heads`` preset)."""
    evaluator_steps: int = 5
    """Adam steps on the evaluator V per iteration."""
    generator_steps: int = 20
    """Adam steps on the generator G per iteration."""
    batch_size: int = 16
    """Buffer samples per update step (evaluator and generator)."""
    evaluator_lr: float = 5e-3
    """Adam learning rate of V (value MLP and probing states)."""
    generator_lr: float = 2e-6
    """Adam learning rate of G."""
    buffer_size: int = 10_000
    """Capacity of the FIFO replay buffer, in policies."""
    buffer_dtype: str = "float32"
    """Storage type of buffered thetas: float32 or float16 (half the memory and checkpoint size)."""
    rebase_buffer: bool = False
    """Keep buffered policies acting as when they earned their returns while the running observation
    statistics move: each entry remembers the (mean, std) it ran under and is re-based to the current ones
    when drawn (``RecencyBuffer``, ``flat_mlp.rebase_inputs``, exact). False (the paper): a stored theta
    read under newer statistics is another policy, and its return label goes stale (Hopper seed 0 at 3M:
    the oldest, labelled 637 on average, earned 341; bench/results/stale-buffer.md)."""
    recency_alpha: float = 1.1
    """The k-th newest buffered policy is sampled with weight (1/k)^alpha."""
    n_probe: int = 200
    """Learnable probing states of the fingerprinting evaluator."""
    probe_init: str = "uniform"
    """Probing states start U[0, 1) (paper) or N(0, I) ("normal": where normalised observations lie)."""
    evaluator_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of V's value MLP (ReLU)."""
    chunk: int = 16
    """Hypernetwork tile side in neurons."""
    embed_dim: int = 8
    """Size of each tile's learned embedding z."""
    generator_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the hypernetwork's weight and bias MLPs (ReLU)."""
    output_scaling: bool = True
    """Scale generated weights by 2/sqrt(fan_in)."""
    generator_init_std: float = 0.0
    """Std of the hypernetwork's raw outputs at init (0: PyTorch's default init, raw std ~0.1); 0.5 with
    output scaling starts G at weights of std ~1/sqrt(fan_in), on the scale of the exploration noise."""
    drive: float = 20.0
    """Added to the best training return to form the command (raw return units unless drive_scaled)."""
    drive_scaled: bool = False
    """The drive is a fraction of the range of training returns seen (max - min) instead of raw units."""
    command_window: int = 0
    """The command is built on the best return among the newest ``command_window`` buffered policies
    (0: the best return ever seen, the paper). A window keeps the command just above what G was recently
    trained on instead of extrapolating G far beyond its data after one lucky episode."""
    first_command: float = 1.0
    """Command (raw return) before any return has been seen."""
    return_scaling: str = "paper"
    """paper: G gets c / (rew_max - rew_min) with hand-set ranges and V predicts raw returns; learned: G gets
    (c - min) / (max - min) over the training returns seen so far, V predicts returns standardised by the
    mean and std of the buffered returns (its last layer is rescaled when they move)."""
    return_range: tuple[float, ...] = ()
    """(rew_min, rew_max) for return_scaling=paper; empty uses the official table for known envs."""
    return_convention: str = "no_survival_bonus"
    """Training returns: standard, or no_survival_bonus (the official code drops the +1/step alive bonus)."""


class GoGePo(Algorithm):
    name = "gogepo"
    Config = GoGePoConfig
    presets = {
        "paper": {},
        "fast": {
            "policies_per_iteration": 16, "steps_per_iteration": 4000, "min_policies": 4,
            "noise_free_policies": 4, "spread_noise_free": True, "evaluator_steps": 20,
            "generator_steps": 5, "batch_size": 16, "evaluator_lr": 1e-3, "generator_lr": 1e-4,
            "buffer_size": 4000, "buffer_dtype": "float16", "return_scaling": "learned", "drive": 0.05,
            "drive_scaled": True, "command_window": 64, "generator_warmup": 64, "probe_init": "normal",
            "anchor_weight": 1.0,
        },
    }
    # fast for tasks whose first good behaviour only exploration finds (Swimmer's wiggle, MountainCar's swing):
    # at most 1 of 4 policies noise-free (bench/results/gogepo-nfshare-*.md), and a quarter of each generator
    # batch at commands over the seen range + drive, so G is trained at the command it is rolled out with
    # (buffer returns alone sit below it: a stuck Swimmer's G gave ~35 at every command while 50 steps at the
    # command alone reached 110; bench/results/gogepo-swimmer-gc025-s*.md). Not in fast: it collapses pendulum seed 0.
    # The anchor (pendulum seeds 1, 3, 6 no longer collapse) is kept here too: Swimmer >= 300 on 3 of 3 with
    # calibration MAE 5-9%, MountainCar final >= 90 on 5 of 5 (bench/results/gogepo-{swimmer,mc}-anchor*.md).
    presets["fast-explore"] = {**presets["fast"], "noise_free_share": 0.25, "generated_command_frac": 0.25}
    # fast with noise of sigma / sqrt(fan_in) per layer: uniform 0.1 saturates the perturbed 2x256 tanh
    # policies into bang-bang ones; on Hopper this reached >= 2500 on 3 of 3 seeds (uniform: 1 of 3). Without
    # the anchor: with it seed 0 passed 2500 only at 1.9M and seed 1 never (bench/results/gogepo-hopper-anchor-s*.md).
    presets["fast-fanin"] = {**presets["fast"], "noise_scaling": "fan_in", "sigma": 1.0, "anchor_weight": 0.0}
    # fast-fanin with five value heads whose probing states only the first head trains: Hopper's default since
    # 2026-12-07. Both calibration targets at 3M steps on 4 of 7 seeds (fast-fanin 2 of 7, the heads alone 3 of 7),
    # 2500 on 7 of 7, though later than fast-fanin on seeds 0-2; one run alone 1605 s for 3M steps (seed 0, the
    # slowest kind: it stands still to 900k) (bench/results/gogepo-hopper-heads5-probes).
    presets["fast-heads"] = {**presets["fast-fanin"], "evaluator_heads": 5, "probes_by_first_head": True}
    default_preset = None  # by env: preset_for
    ENV_PRESETS = {"Swimmer": "fast-explore", "MountainCarContinuous": "fast-explore", "Hopper": "fast-heads"}
    """The preset a run without ``--preset`` takes, by task name (others: ``fast``); each measured per task."""

    @staticmethod
    def preset_for(env_id: str) -> str:
        return GoGePo.ENV_PRESETS.get(env_id.split("-")[0], "fast")

    def __init__(self, config: GoGePoConfig, info: EnvInfo, seed: int):
        self.cfg = c = config
        self._check_config(c)
        self.return_convention = c.return_convention
        self.spec = MLPSpec(info.obs_dim, info.act_dim, c.hidden, "tanh", "tanh", info.action_high)
        self.noise_scale = noise_scales(self.spec, c.noise_scaling)
        self.paper_range = self._paper_range(c, info.env_id)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.generator = HyperNetwork(self.spec, 1, c.chunk, c.embed_dim, c.generator_hidden,
                                          c.output_scaling, c.generator_init_std or None)
            self.evaluator = FingerprintEvaluator(self.spec, c.n_probe, c.evaluator_hidden, c.probe_init)
            # more value heads on the same probing states (their own probes are discarded)
            self.extra_heads = torch.nn.ModuleList(
                FingerprintEvaluator(self.spec, c.n_probe, c.evaluator_hidden, c.probe_init).mlp
                for _ in range(int(c.evaluator_heads) - 1))
        self.opt_g = adam(self.generator.parameters(), c.generator_lr)
        self.opt_v = adam([*self.evaluator.parameters(), *self.extra_heads.parameters()], c.evaluator_lr)
        self.buffer = RecencyBuffer(self.spec.num_params, c.buffer_size, c.recency_alpha,
                                    dtype=BUFFER_DTYPES[c.buffer_dtype],
                                    rebase_spec=self.spec if c.rebase_buffer else None)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.best_train = -math.inf
        self.ret_min, self.ret_max = math.inf, -math.inf  # training returns seen (any scaling)
        self.v_loc, self.v_scale = 0.0, 1.0  # V predicts (R - v_loc) / v_scale
        self.last_length: float | None = None  # mean episode length of the last iteration
        self.episodes = 0
        self.env_steps = 0
        """The engine's env-step count at the last iteration (restored with it on resume)."""
        self.profile = {"rollout": 0.0, "evaluator": 0.0, "generator": 0.0}
        """Seconds spent in each phase since construction (not checkpointed)."""

    @staticmethod
    def _check_config(c: GoGePoConfig) -> None:
        positive = ("policies_per_iteration", "min_policies", "batch_size", "buffer_size", "n_probe", "chunk",
                    "embed_dim", "evaluator_heads")
        for name in positive:
            if int(getattr(c, name)) < 1:
                raise PolicygenError(f"gogepo {name} must be a positive integer, got {getattr(c, name)!r}")
        for name in ("evaluator_steps", "generator_steps", "generated_command_from"):
            if int(getattr(c, name)) < 0:
                raise PolicygenError(f"gogepo {name} must be >= 0, got {getattr(c, name)!r}")
        if c.return_scaling not in RETURN_SCALINGS:
            raise PolicygenError(f"return_scaling {c.return_scaling!r} is not one of {list(RETURN_SCALINGS)}")
        if c.return_convention not in RETURN_CONVENTIONS:
            raise PolicygenError(f"return_convention {c.return_convention!r} is not one of "
                                 f"{list(RETURN_CONVENTIONS)}")
        if c.buffer_dtype not in BUFFER_DTYPES:
            raise PolicygenError(f"buffer_dtype {c.buffer_dtype!r} is not one of {list(BUFFER_DTYPES)}")
        for name in ("noise_free_share", "generated_command_frac", "return_uniform_frac", "evaluator_uniform_frac",
                     "spread_perturbed"):
            if not 0.0 <= getattr(c, name) <= 1.0:
                raise PolicygenError(f"gogepo {name} must be in [0, 1], got {getattr(c, name)!r}")
        if not c.anchor_weight >= 0:
            raise PolicygenError(f"anchor_weight must be >= 0, got {c.anchor_weight!r}")
        if not c.sigma >= 0:
            raise PolicygenError(f"sigma must be >= 0, got {c.sigma!r}")
        if c.noise_scaling not in NOISE_SCALINGS:
            raise PolicygenError(f"noise_scaling {c.noise_scaling!r} is not one of {list(NOISE_SCALINGS)}")

    @staticmethod
    def _paper_range(c: GoGePoConfig, env_id: str) -> tuple[float, float] | None:
        if c.return_scaling != "paper":
            return None
        if c.return_range:
            if len(c.return_range) != 2 or not c.return_range[1] > c.return_range[0]:
                raise PolicygenError(f"return_range must be two numbers lo,hi with hi > lo, got "
                                     f"{tuple(c.return_range)}")
            return float(c.return_range[0]), float(c.return_range[1])
        base = env_id.split("-")[0]
        if base not in PAPER_RETURN_RANGES:
            raise PolicygenError(f"return_scaling=paper has no official return range for {env_id}; pass "
                                 f"return_range=LO,HI or use return_scaling=learned (known: "
                                 f"{', '.join(PAPER_RETURN_RANGES)})")
        return PAPER_RETURN_RANGES[base]

    # --- return scaling ----------------------------------------------------------------------------
    def _span(self) -> float:
        if self.paper_range is not None:
            return self.paper_range[1] - self.paper_range[0]
        seen = self.ret_max - self.ret_min if self.episodes else 0.0
        return max(seen, 1e-3 * max(abs(self.ret_max), abs(self.ret_min), 1.0) if self.episodes else 1.0)

    def _offset(self) -> float:
        return 0.0 if self.paper_range is not None or not self.episodes else self.ret_min

    def command_input(self, commands) -> torch.Tensor:
        """Raw return commands (B,) -> generator input (B, 1)."""
        c = torch.as_tensor(np.asarray(commands, dtype=np.float64)).reshape(-1, 1)
        return ((c - self._offset()) / self._span()).float()

    def value_target(self, returns) -> torch.Tensor:
        """Raw returns (B,) -> what V is trained to predict: raw (paper) or standardised (learned)."""
        r = torch.as_tensor(np.asarray(returns, dtype=np.float64)).reshape(-1)
        return ((r - self.v_loc) / self.v_scale).float()

    def _target_scale(self) -> tuple[float, float]:
        """(loc, scale) of V's targets: (0, 1) for paper; mean and std of the buffered returns for learned
        (robust to one lucky outlier, which would squash min/max-scaled targets of everything else)."""
        if self.paper_range is not None or not len(self.buffer):
            return 0.0, 1.0
        r = self.buffer.values["train_return"][:len(self.buffer)]
        std = float(r.std(unbiased=False))
        return float(r.mean()), max(std, 1e-3 * (abs(float(r.mean())) + 1.0))

    def best_command(self) -> float:
        """The best training return the command builds on: all-time, or within ``command_window``."""
        if not self.episodes:
            return float(self.cfg.first_command)
        if self.cfg.command_window <= 0:
            return self.best_train
        newest = self.buffer.gather(self.buffer.newest_indices(self.cfg.command_window))
        return float(newest["train_return"].max())

    def next_command(self) -> float:
        """Best training return (see ``best_command``) + drive (raw units); ``first_command`` before data."""
        if not self.episodes:
            return float(self.cfg.first_command)
        drive = self.cfg.drive * (self.ret_max - self.ret_min if self.cfg.drive_scaled else 1.0)
        return self.best_command() + drive

    @torch.no_grad()
    def _rescale_targets(self) -> None:
        """Move V's target scale to the current buffer and rewrite V's last layer so V(theta) in raw return
        units is unchanged (PopArt-style): new data changes the scale, not what V has learned."""
        old_loc, old_scale = self.v_loc, self.v_scale
        self.v_loc, self.v_scale = self._target_scale()
        if (self.v_loc, self.v_scale) == (old_loc, old_scale):
            return
        for mlp in self._heads():
            last = mlp[-1]  # raw = loc + scale * v  must stay the same
            last.weight.mul_(old_scale / self.v_scale)
            last.bias.mul_(old_scale).add_(old_loc - self.v_loc).div_(self.v_scale)

    # --- the loop ----------------------------------------------------------------------------------
    def generate(self, commands) -> torch.Tensor:
        """Noise-free policies for raw return commands (B,) -> thetas (B, P)."""
        if not np.isfinite(np.asarray(commands, dtype=np.float64)).all():
            raise PolicygenError(f"commands must be finite returns, got {list(np.asarray(commands).ravel()[:3])}")
        with torch.no_grad():
            return self.generator(self.command_input(commands))

    def iterate(self, engine) -> dict:
        c = self.cfg
        t0 = time.perf_counter()
        command = self.next_command()
        n = self._num_policies()
        n_free = min(int(c.noise_free_policies), max(1, int(n * c.noise_free_share)), n - 1)  # >= 1 perturbed
        commands = np.full(n, command)
        if c.spread_noise_free and self.episodes and n_free > 1:
            commands[1:n_free] = self._over_seen_range(n_free - 1)
        n_spread = self._stochastic_round((n - n_free) * c.spread_perturbed) if self.episodes else 0
        if n_spread:  # the last n_spread perturbed policies explore around G at commands over the seen range
            commands[n - n_spread:] = self._over_seen_range(n_spread)
        noise = torch.randn(n, self.spec.num_params, generator=self.gen)
        noise[:n_free] = 0.0
        spread = c.spread_noise_free and self.episodes and n_free > 1
        bases = self.generate(commands[:n_free] if spread else [command])
        thetas = torch.cat([bases, bases[:1].expand(n - len(bases), -1)])
        if n_spread:
            thetas[n - n_spread:] = self.generate(commands[n - n_spread:])
        thetas = thetas + c.sigma * self.noise_scale * noise
        ran_under = (engine.obs_stats.mean.copy(), engine.obs_stats.std.copy()) if c.rebase_buffer else None
        res = engine.evaluate(thetas, episodes=1, update_stats=True)
        t1 = time.perf_counter()
        if c.rebase_buffer:
            self.buffer.set_obs_norm(engine.obs_stats.mean, engine.obs_stats.std)
        self.env_steps = engine.env_steps
        ok = ~res.failed
        if ok.any():
            self._record(thetas[torch.as_tensor(ok)], res.train_returns[ok], res.returns[ok],
                         res.lengths[ok], commands[ok], ran_under)
            self._rescale_targets()
        v_loss = self._update_evaluator() if len(self.buffer) else math.nan
        t2 = time.perf_counter()
        g_loss = self._update_generator() if self.episodes >= max(c.generator_warmup, 1) else math.nan
        t3 = time.perf_counter()
        for k, dt in zip(("rollout", "evaluator", "generator"), (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.profile[k] += dt
        self.last_losses = {"evaluator": v_loss, "generator": g_loss}
        tr = res.train_returns[ok]
        return {"episodes": n, "train_return_mean": float(tr.mean()) if len(tr) else math.nan,
                "train_return_max": float(tr.max()) if len(tr) else math.nan,
                "best_train_return": self.best_train, "command": command, "loss": g_loss,
                "failures": int(res.failed.sum())}

    def _over_seen_range(self, k: int) -> np.ndarray:
        """``k`` commands drawn uniformly over the training returns seen."""
        u = torch.rand(k, generator=self.gen, dtype=torch.float64).numpy()
        return self.ret_min + u * (self.ret_max - self.ret_min)

    def _stochastic_round(self, x: float) -> int:
        """floor(x), plus one with probability frac(x): the right share on average even when an iteration
        has only one or two perturbed policies (a solved pendulum or Hopper has 1 of 4)."""
        whole = math.floor(x)
        if x > whole:
            whole += int(torch.rand(1, generator=self.gen).item() < x - whole)
        return whole

    def _num_policies(self) -> int:
        c = self.cfg
        if c.steps_per_iteration <= 0 or self.last_length is None:
            return int(c.policies_per_iteration)
        n = math.ceil(c.steps_per_iteration / max(self.last_length, 1.0))
        return int(min(max(n, c.min_policies), c.policies_per_iteration))

    def _record(self, thetas: torch.Tensor, train_returns: np.ndarray, returns: np.ndarray,
                lengths: np.ndarray, commands, obs_norm=None) -> None:
        self.buffer.add(thetas, train_returns, returns, lengths, np.broadcast_to(commands, (len(thetas),)),
                        obs_norm)
        self.episodes += len(thetas)
        self.last_length = float(np.mean(lengths))
        self.best_train = max(self.best_train, float(train_returns.max()))
        self.ret_min = min(self.ret_min, float(train_returns.min()))
        self.ret_max = max(self.ret_max, float(train_returns.max()))

    def _update_evaluator(self) -> float:
        """``evaluator_steps`` Adam steps on (V(theta) - target(R))^2 over recency samples."""
        losses = []
        for _ in range(int(self.cfg.evaluator_steps)):
            loss = 0.0
            for k, mlp in enumerate(self._heads()):  # each head on its own draws
                s = self._draw(self.cfg.batch_size, self.cfg.evaluator_uniform_frac)
                # recency sampling repeats entries: evaluate each distinct one once (same loss, less work)
                uniq, inv = torch.unique(s["index"], return_inverse=True)
                fp = self.evaluator.fingerprint(self.buffer.gather(uniq)["theta"],
                                                detach_probes=k > 0 and self.cfg.probes_by_first_head)
                pred = mlp(fp).squeeze(-1)[inv]
                loss = loss + (pred - self.value_target(s["train_return"])).pow(2).mean()
            self.opt_v.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_v.step()
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else math.nan

    def _update_generator(self) -> float:
        """``generator_steps`` Adam steps on (V(G(R)) - target(R))^2, achieved returns R as commands."""
        losses = []
        self.evaluator.requires_grad_(False)  # frozen V (and probes): no wasted gradients
        self.extra_heads.requires_grad_(False)
        try:
            for _ in range(int(self.cfg.generator_steps)):
                r, achieved_by = self._generator_commands()
                uniq, inv = torch.unique(r, return_inverse=True)  # V(G(c)) depends on c alone
                fingerprints = self.evaluator.fingerprint(self.generator(self.command_input(uniq)))
                target_r = self.value_target(r)
                loss = sum((mlp(fingerprints).squeeze(-1)[inv] - target_r).pow(2).mean()
                           for mlp in self._heads()) / len(self._heads())
                if self.cfg.anchor_weight > 0 and len(achieved_by):
                    with torch.no_grad():
                        target = self.evaluator.fingerprint(achieved_by)
                    high = self.spec.high_tensor().repeat(self.cfg.n_probe)
                    anchor = ((fingerprints[inv[:len(achieved_by)]] - target) / high).pow(2).mean()
                    loss = loss + self.cfg.anchor_weight * anchor
                self.opt_g.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_g.step()
                losses.append(loss.item())
        finally:
            self.evaluator.requires_grad_(True)
            self.extra_heads.requires_grad_(True)
        return float(np.mean(losses)) if losses else math.nan

    def _generator_commands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw return commands (batch,) for one generator step: buffer returns first, then a share of
        generated ones; and the thetas (n_buffer, P) that achieved the buffer returns (for the anchor)."""
        b = int(self.cfg.batch_size)
        share = self.cfg.generated_command_frac if self.env_steps >= self.cfg.generated_command_from else 0.0
        n_gen = min(b, int(round(b * share)))
        if n_gen < b:
            n_even = min(b - n_gen, int(round(b * self.cfg.return_uniform_frac)))
            s = self._draw(b - n_gen, n_even=n_even)
            r, achieved_by = s["train_return"], s["theta"]
        else:
            r, achieved_by = torch.zeros(0), torch.zeros(0, self.spec.num_params)
        if n_gen:
            drive = self.next_command() - self.best_command()
            u = torch.rand(n_gen, generator=self.gen, dtype=torch.float64)
            r = torch.cat([r.double(), self.ret_min + drive + u * (self.ret_max - self.ret_min)])
        return r, achieved_by

    def _draw(self, n: int, even_frac: float = 0.0, n_even: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` buffer entries: ``n_even`` (default ``round(n * even_frac)``) drawn evenly over the buffered
        returns, after the others, drawn by recency."""
        n_even = min(n, int(round(n * even_frac)) if n_even is None else n_even)
        parts = [self.buffer.sample(n - n_even, self.gen)] if n_even < n else []
        if n_even:
            parts.append(self.buffer.sample_by_return(n_even, self.gen))
        return parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _heads(self) -> list:
        return [self.evaluator.mlp, *self.extra_heads]

    def eval_policy(self) -> tuple[torch.Tensor, float | None]:
        """G(best_command()) without noise (``first_command`` before any data)."""
        command = self.best_command()
        return self.generate([command])[0], command

    def seen_return_range(self) -> tuple[float, float]:
        """(min, max) of the training returns seen (raw, the run's return convention)."""
        if not self.episodes:
            raise PolicygenError("this GoGePo run has not completed an episode yet: no returns seen")
        return self.ret_min, self.ret_max

    def predict_returns(self, thetas: torch.Tensor) -> np.ndarray:
        """The evaluator's V(theta) in raw return units (the run's return convention), for (B, P) thetas."""
        with torch.no_grad():
            f = self.evaluator.fingerprint(torch.as_tensor(thetas, dtype=torch.float32))
            v = torch.stack([mlp(f).squeeze(-1) for mlp in self._heads()]).mean(0)
        return (self.v_loc + self.v_scale * v.double()).numpy()

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        heads = {"extra_heads": dict(self.extra_heads.state_dict())} if len(self.extra_heads) else {}
        return {**heads, "generator": dict(self.generator.state_dict()),
                "evaluator": dict(self.evaluator.state_dict()),
                "opt_g": optimizer_state(self.opt_g), "opt_v": optimizer_state(self.opt_v),
                "buffer": self.buffer.state_dict(), "gen": self.gen.get_state(),
                "best_train": self.best_train, "ret_min": self.ret_min, "ret_max": self.ret_max,
                "v_loc": self.v_loc, "v_scale": self.v_scale, "last_length": self.last_length,
                "episodes": self.episodes}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.evaluator.load_state_dict(state["evaluator"])
        if len(self.extra_heads):
            self.extra_heads.load_state_dict(state["extra_heads"])
        load_optimizer_state(self.opt_g, state["opt_g"])
        load_optimizer_state(self.opt_v, state["opt_v"])
        self.buffer.load_state_dict(state["buffer"])
        self.gen.set_state(state["gen"])
        self.best_train, self.episodes = float(state["best_train"]), int(state["episodes"])
        self.ret_min, self.ret_max = float(state["ret_min"]), float(state["ret_max"])
        self.v_loc, self.v_scale = float(state["v_loc"]), float(state["v_scale"])
        self.last_length = None if state["last_length"] is None else float(state["last_length"])
