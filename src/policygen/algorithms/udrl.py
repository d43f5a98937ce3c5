"""Classic Upside-Down RL (Schmidhuber 2019; Srivastava et al. 2019), for continuous actions.

A behaviour function B(s, d_r, d_h) -> action maps a state, a desired return d_r and a desired horizon d_h to
an action. Each iteration of Algorithm 1 of Srivastava et al.:

1. train B by supervised learning for ``n_updates_per_iter`` steps on hindsight-relabelled samples from the
   replay: an episode e and a time t1 are drawn uniformly, the input is (s_t1, sum of e's rewards from t1
   to the end, T_e - t1) and the target is the action taken at t1 (Gaussian log-likelihood, or MSE);
2. take the ``last_few`` best episodes of the replay, of mean return M, return std S and mean length L;
   the exploratory command is d_h = L and d_r ~ U[M, M + S];
3. run ``n_episodes_per_iter`` episodes with B acting stochastically, updating the command after each step
   (d_r -= r, d_h = max(d_h - 1, 1)), and keep the ``replay_size`` best episodes (by return).

Evaluation acts deterministically (the Gaussian's mean) with the command d_r = M + S, d_h = L (the top of
the exploratory interval; logged as ``eval_command``). The command enters B by a multiplicative gate as
in the paper's code: ``f(s) * sigmoid(W [d_r * return_scale, d_h * horizon_scale])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policygen.algorithms.base import RunConfig, adam
from policygen.algorithms.steploop import StepAlgorithm
from policygen.envs.make import EnvInfo, make_gymnasium
from policygen.errors import PolicygenError
from policygen.runs.files import load_optimizer_state, optimizer_state


@dataclass
class UDRLConfig:
    """UDRL settings; names follow Srivastava et al. (2019), values their LunarLanderContinuous ones."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of B; the first is the width of the command gate."""
    return_scale: float = 0.02
    """Scale of d_r at B's input."""
    horizon_scale: float = 0.01
    """Scale of d_h at B's input."""
    replay_size: int = 600
    """Episodes kept in the replay (the best by return)."""
    last_few: int = 100
    """Best episodes the exploratory command is drawn from."""
    n_warmup_episodes: int = 50
    """Random-action episodes that fill the replay first."""
    n_episodes_per_iter: int = 20
    """Exploratory episodes per iteration."""
    n_updates_per_iter: int = 150
    """Gradient steps of B per iteration."""
    batch_size: int = 256
    """Hindsight samples per gradient step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    head: str = "gaussian"
    """gaussian: B outputs a mean and a learned std, trained by log-likelihood, sampled for exploration;
    mse: B outputs the action, trained by squared error, explored with Gaussian noise ``explore_noise``."""
    explore_noise: float = 0.2
    """mse head: std of the exploration noise, in units of the action bound."""

    def __post_init__(self) -> None:
        if self.head not in ("gaussian", "mse"):
            raise PolicygenError(f"head must be gaussian or mse, got {self.head!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise PolicygenError(f"hidden needs at least one width >= 1, got {self.hidden}")
        for k in ("replay_size", "last_few", "n_episodes_per_iter", "batch_size"):
            if getattr(self, k) < 1:
                raise PolicygenError(f"{k} must be >= 1, got {getattr(self, k)}")


class Behaviour(nn.Module):
    """B(s, c) -> (mean (N, A), log_std (N, A)): state features gated by the command."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], high: np.ndarray):
        super().__init__()
        self.obs_in = nn.Linear(obs_dim, hidden[0])
        self.cmd_in = nn.Linear(2, hidden[0])
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden[-1], 2 * act_dim)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, cmd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tanh(self.obs_in(obs)) * torch.sigmoid(self.cmd_in(cmd))
        mean, log_std = self.out(self.body(x)).chunk(2, dim=-1)
        return torch.tanh(mean) * self.high, log_std.clamp(-5.0, 1.0)


class UDRL(StepAlgorithm):
    name = "udrl"
    Config = UDRLConfig

    def __init__(self, config: UDRLConfig, info: EnvInfo, seed: int):
        self.cfg, self.info, self.seed = config, info, seed
        self.high = np.asarray(info.action_high, dtype=np.float64)
        torch.manual_seed(seed)
        self.net = Behaviour(info.obs_dim, info.act_dim, config.hidden, self.high)
        self.opt = adam(self.net.parameters(), config.learning_rate)
        self.gen = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.episodes: list[dict] = []  # the replay: obs (T, O), actions (T, A), rewards (T,)
        self.steps = self.n_episodes = self.iterations = self.episode_in_iter = 0
        self.explore = (0.0, 1.0)
        self.loss: float | None = None
        self._returns: list[float] = []
        self._cmd = np.zeros(2)
        self.env = None

    # --- the loop's interface --------------------------------------------------------------------
    def setup(self, rc: RunConfig, run_path: Path, state: dict | None) -> None:
        self.env = make_gymnasium(rc.env_id, rc.env_kwargs)
        if state is not None:
            try:
                self.load_state_dict(state)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise PolicygenError(f"{run_path}: checkpoint of the UDRL learner is damaged ({e})") from None

    def learn(self, total_steps: int, on_step) -> None:
        while self.steps < total_steps:
            if self.n_episodes < self.cfg.n_warmup_episodes:
                self._episode(random=True)
            else:
                if self.episode_in_iter == 0:
                    self._train()
                    self.explore = self._command_interval()
                self._episode(random=False)
                self.episode_in_iter = (self.episode_in_iter + 1) % self.cfg.n_episodes_per_iter
            if not on_step():  # at an episode boundary: a checkpoint here resumes exactly
                return

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._act(obs, self._cmd, sample=False)

    def begin_episode(self) -> None:
        self._cmd = self.eval_command_pair()

    def observe(self, reward: float) -> None:
        self._cmd = np.array([self._cmd[0] - reward, max(self._cmd[1] - 1.0, 1.0)])

    @property
    def env_steps(self) -> int:
        return self.steps

    def train_returns(self) -> list[float]:
        return self._returns

    def row(self) -> dict:
        return {"iteration": self.iterations, "loss": self.loss, "command": self._explore_mid(),
                "eval_command": float(self.eval_command_pair()[0]) if self.episodes else None}

    def save(self, run_path: Path) -> dict:
        return self.state_dict()

    def close(self) -> None:
        if self.env is not None:
            self.env.close()

    # --- commands ---------------------------------------------------------------------------------
    def _top(self) -> list[dict]:
        return self.episodes[: self.cfg.last_few]  # the replay is kept sorted, best first

    def _command_interval(self) -> tuple[float, float]:
        """(M, S) of the best episodes' returns."""
        rets = np.array([e["return"] for e in self._top()])
        return float(rets.mean()), float(rets.std())

    def _explore_mid(self) -> float | None:
        return self.explore[0] + self.explore[1] / 2 if self.iterations else None

    def eval_command_pair(self) -> np.ndarray:
        """The evaluation command (d_r = M + S, d_h = mean length of the best episodes)."""
        if not self.episodes:
            return np.array([0.0, 1.0])
        m, s = self._command_interval()
        return np.array([m + s, float(np.mean([len(e["rewards"]) for e in self._top()]))])

    def command_episode(self, env, desired_return: float, horizon: float, seed: int) -> float:
        """The standard return of one deterministic episode under the command (d_r, d_h)."""
        obs, _ = env.reset(seed=seed)
        self._cmd, total, done = np.array([desired_return, horizon]), 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(self.act(np.asarray(obs, dtype=np.float64)))
            total += float(r)
            self.observe(float(r))
            done = term or trunc
        return total

    # --- acting and learning -----------------------------------------------------------------------
    def _act(self, obs: np.ndarray, cmd: np.ndarray, sample: bool) -> np.ndarray:
        c = self.cfg
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            k = torch.tensor([[cmd[0] * c.return_scale, cmd[1] * c.horizon_scale]], dtype=torch.float32)
            mean, log_std = self.net(o, k)
            if sample:
                std = log_std.exp() if c.head == "gaussian" else self.net.high * c.explore_noise
                mean = mean + std * torch.randn(mean.shape, generator=self.gen)
        return np.clip(mean[0].numpy().astype(np.float64), -self.high, self.high)

    def _episode(self, random: bool) -> None:
        seed = int(np.random.SeedSequence([self.seed, self.n_episodes]).generate_state(1)[0] % (2**31 - 1))
        obs, _ = self.env.reset(seed=seed)
        cmd = np.array([self.rng.uniform(self.explore[0], self.explore[0] + self.explore[1]),
                        float(np.mean([len(e["rewards"]) for e in self._top()])) if self.episodes else 1.0])
        o_list, a_list, r_list, done = [], [], [], False
        while not done:
            if random:
                a = self.rng.uniform(-self.high, self.high)
            else:
                a = self._act(obs, cmd, sample=True)
            nxt, r, term, trunc, _ = self.env.step(a)
            o_list.append(np.asarray(obs, np.float32))
            a_list.append(np.asarray(a, np.float32))
            r_list.append(float(r))
            cmd = np.array([cmd[0] - float(r), max(cmd[1] - 1.0, 1.0)])
            obs, done = nxt, term or trunc
        self.steps += len(r_list)
        self.n_episodes += 1
        self._returns.append(float(sum(r_list)))
        self._store(np.stack(o_list), np.stack(a_list), np.asarray(r_list, np.float32))

    def _store(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        ep = {"obs": obs, "actions": actions, "rewards": rewards, "return": float(rewards.sum()),
              "to_go": np.cumsum(rewards[::-1])[::-1].copy()}
        self.episodes.append(ep)
        self.episodes.sort(key=lambda e: -e["return"])  # stable: among equals, the older first
        del self.episodes[self.cfg.replay_size:]

    def _flat(self) -> dict:
        """The replay as flat arrays, for vectorised hindsight sampling."""
        eps = self.episodes
        lengths = np.array([len(e["rewards"]) for e in eps])
        c = self.cfg
        left = np.concatenate([np.arange(n, 0, -1) for n in lengths])  # steps to the end: T_e - t
        cmd = np.stack([np.concatenate([e["to_go"] for e in eps]) * c.return_scale, left * c.horizon_scale], 1)
        return {"obs": torch.as_tensor(np.concatenate([e["obs"] for e in eps])),
                "actions": torch.as_tensor(np.concatenate([e["actions"] for e in eps])),
                "cmd": torch.as_tensor(cmd.astype(np.float32)), "lengths": lengths,
                "start": np.concatenate([[0], np.cumsum(lengths)[:-1]])}

    def _batch(self, flat: dict) -> tuple[torch.Tensor, ...]:
        """Hindsight samples: an episode, then a time in it, uniformly: (obs (N, O), command (N, 2), action (N, A))."""
        e = self.rng.integers(0, len(flat["lengths"]), self.cfg.batch_size)
        t = (self.rng.random(self.cfg.batch_size) * flat["lengths"][e]).astype(np.int64)
        idx = torch.as_tensor(flat["start"][e] + t)
        return flat["obs"][idx], flat["cmd"][idx], flat["actions"][idx]

    def _train(self) -> None:
        total, flat = 0.0, self._flat()
        for _ in range(self.cfg.n_updates_per_iter):
            obs, cmd, act = self._batch(flat)
            mean, log_std = self.net(obs, cmd)
            if self.cfg.head == "gaussian":
                loss = (((act - mean) / log_std.exp()) ** 2 / 2 + log_std).sum(-1).mean()
            else:
                loss = ((act - mean) ** 2).sum(-1).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss.detach())
        self.loss = total / max(1, self.cfg.n_updates_per_iter)
        self.iterations += 1

    # --- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        eps = self.episodes
        lengths = np.array([len(e["rewards"]) for e in eps], np.int64)
        cat = (lambda k: np.concatenate([e[k] for e in eps])) if eps else (lambda k: np.zeros(0, np.float32))
        return {"net": self.net.state_dict(), "opt": optimizer_state(self.opt), "gen": self.gen.get_state(),
                "rng": self.rng.bit_generator.state, "lengths": lengths, "obs": cat("obs"),
                "actions": cat("actions"), "rewards": cat("rewards"),
                "counters": [self.steps, self.n_episodes, self.iterations, self.episode_in_iter],
                "explore": list(self.explore), "loss": self.loss}

    def load_state_dict(self, s: dict) -> None:
        self.net.load_state_dict(s["net"])
        load_optimizer_state(self.opt, s["opt"])
        self.gen.set_state(s["gen"])
        self.rng.bit_generator.state = s["rng"]
        self.steps, self.n_episodes, self.iterations, self.episode_in_iter = (int(v) for v in s["counters"])
        self.explore, self.loss = tuple(s["explore"]), s["loss"]  # train returns restart, as SB3's Monitor's do
        self.episodes, start = [], 0
        for n in np.asarray(s["lengths"]).tolist():
            sl = slice(start, start + n)
            start += n
            self._store(s["obs"][sl].reshape(n, -1), s["actions"][sl].reshape(n, -1), s["rewards"][sl])
