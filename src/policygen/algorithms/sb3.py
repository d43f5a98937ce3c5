"""Stable-Baselines3's TD3, SAC and DDPG and sb3-contrib's ARS behind ``policygen train``.

The library is wrapped, not rewritten: policygen builds the model from a documented config, runs its
``learn()`` with a callback that evaluates (policygen's protocol) and checkpoints at every ``eval_every``
env steps, and writes the same run directory as its own algorithms.

Checkpoints use SB3's own ``save`` and ``save_replay_buffer`` (zip and pickle files, written atomically
into ``checkpoints/sb3/``), and ``checkpoints/latest.safetensors`` records their SHA-256. ``--resume``
unpickles only a file whose hash matches the one the run itself recorded: resume only run directories you
made; never point it at an SB3 file someone handed you (pickle runs code).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policygen.algorithms.base import RunConfig
from policygen.algorithms.steploop import StepAlgorithm
from policygen.envs.make import EnvInfo, make_gymnasium
from policygen.errors import PolicygenError
from policygen.runs.files import atomic_write_bytes

SB3_DIR = "checkpoints/sb3"
SNAPSHOT_DIR = "checkpoints/sb3-snapshots"
"""``train --snapshots N``: the model zip at each mark, ``model-{env_steps:010d}.zip``, kept for good (a
Make-An-Agent data set source: ``policygen collect --sb3-sac RUN_DIR``)."""


@dataclass
class OffPolicyConfig:
    """TD3 / SAC / DDPG settings: SB3's own defaults, except where a field says otherwise."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of actor and critics (SB3's TD3/SAC default; SB3's DDPG default is 400,300)."""
    learning_rate: float | None = None
    """Adam step size; None: SB3's default (TD3 and DDPG 1e-3, SAC 3e-4)."""
    batch_size: int = 256
    """Minibatch size of each gradient step (SB3's default)."""
    learning_starts: int = 10_000
    """Random-action steps before learning (RL-Zoo's MuJoCo value), capped at a tenth of the run's budget."""
    buffer_size: int = 1_000_000
    """Replay capacity (SB3's default), capped at the run's budget (a larger buffer would never fill)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Target-network soft-update rate."""
    train_freq: int = 1
    """Env steps between gradient phases."""
    gradient_steps: int = 1
    """Gradient steps per phase."""
    action_noise: float = 0.1
    """TD3/DDPG: std of the Gaussian exploration noise, in units of the action bound (RL-Zoo's value); SAC: unused."""


@dataclass
class ARSSB3Config:
    """sb3-contrib ARS settings (its argument names), RL-Zoo's per-env values as presets."""

    n_delta: int = 8
    """N: random directions per update."""
    n_top: int = 4
    """b: best directions used in the update."""
    learning_rate: float = 0.02
    """alpha: step size."""
    delta_std: float = 0.05
    """nu: std of the directions."""
    alive_bonus_offset: float = 0.0
    """Added to every reward for learning (RL-Zoo: -1 on Hopper)."""
    normalize: bool = True
    """Normalise observations with running statistics (VecNormalize, rewards untouched)."""
    linear: bool = True
    """sb3-contrib's LinearPolicy (the paper's linear policy); False: its MlpPolicy."""


class SB3Algorithm(StepAlgorithm):
    """One SB3 model, its Monitor-wrapped training environment and a callback into the step loop."""

    sb3_class: str = ""
    keeps_snapshots = True

    def __init__(self, config, info: EnvInfo, seed: int):
        self.cfg, self.info, self.seed = config, info, seed
        self.model = None
        self.vecnorm = None
        self._loss: float | None = None

    # --- building --------------------------------------------------------------------------------
    def _import(self):
        try:
            if self.sb3_class == "ARS":
                import sb3_contrib as lib
            else:
                import stable_baselines3 as lib
        except ModuleNotFoundError as e:
            raise PolicygenError(f"algorithm {self.name!r} needs the package {e.name!r}: "
                                 f"pip install 'policygen[sb3]'") from None
        return getattr(lib, self.sb3_class)

    def check_run(self, rc: RunConfig) -> None:
        super().check_run(rc)
        self._import()

    def _venv(self, rc: RunConfig):
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        self.monitor = Monitor(make_gymnasium(rc.env_id, rc.env_kwargs))
        venv = DummyVecEnv([lambda: self.monitor])
        if getattr(self.cfg, "normalize", False):
            from stable_baselines3.common.vec_env import VecNormalize

            venv = self.vecnorm = VecNormalize(venv, norm_obs=True, norm_reward=False)
        return venv

    def _kwargs(self, rc: RunConfig) -> dict:
        raise NotImplementedError

    def setup(self, rc: RunConfig, run_path: Path, state: dict | None) -> None:
        cls = self._import()
        venv = self._venv(rc)
        if state is None:
            self.model = cls(env=venv, seed=rc.seed, device="cpu", verbose=0, **self._kwargs(rc))
            return
        try:
            model_bytes = _checked(run_path, state["model"], state["model_sha256"])
            self.model = cls.load(io.BytesIO(model_bytes), env=venv, device="cpu")
            if state.get("buffer"):
                self.model.load_replay_buffer(io.BytesIO(_checked(run_path, state["buffer"], state["buffer_sha256"])))
            if self.vecnorm is not None:
                rms = self.vecnorm.obs_rms
                rms.mean, rms.var, rms.count = (np.asarray(state["obs_mean"]), np.asarray(state["obs_var"]),
                                                float(state["obs_count"]))
            self._loss = state.get("loss")
        except (KeyError, TypeError, ValueError) as e:
            raise PolicygenError(f"{run_path}: checkpoint of the SB3 model is damaged ({e})") from None
        self.model.set_random_seed((rc.seed + self.model.num_timesteps) % 2**32)

    # --- the loop's interface --------------------------------------------------------------------
    def learn(self, total_steps: int, on_step) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        outer = self

        class _Callback(BaseCallback):
            def _on_step(self) -> bool:
                value = self.model.logger.name_to_value.get("train/critic_loss")
                if value is not None:
                    outer._loss = float(value)
                return on_step()

        self.model.learn(total_timesteps=total_steps - self.model.num_timesteps, callback=_Callback(),
                         reset_num_timesteps=False, progress_bar=False)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.vecnorm is not None:
            obs = self.vecnorm.normalize_obs(obs)
        return self.model.predict(obs, deterministic=True)[0]

    @property
    def env_steps(self) -> int:
        return int(self.model.num_timesteps)

    def train_returns(self) -> list[float]:
        return [float(r) for r in self.monitor.get_episode_rewards()]

    def row(self) -> dict:
        return {"iteration": int(self.model._n_updates), "loss": self._loss}

    def save(self, run_path: Path) -> dict:
        steps = self.env_steps
        buf = io.BytesIO()
        self.model.save(buf)
        state = {"loss": self._loss, **_write(run_path, f"model-{steps:010d}.zip", buf.getvalue(), "model")}
        if hasattr(self.model, "replay_buffer") and self.model.replay_buffer is not None:
            buf = io.BytesIO()
            self.model.save_replay_buffer(buf)
            state.update(_write(run_path, f"buffer-{steps:010d}.pkl", buf.getvalue(), "buffer"))
        if self.vecnorm is not None:
            rms = self.vecnorm.obs_rms
            state.update(obs_mean=np.asarray(rms.mean, np.float64), obs_var=np.asarray(rms.var, np.float64),
                         obs_count=float(rms.count))
        _prune(run_path, {state["model"], state.get("buffer")})
        return state

    def snapshot(self, run_path: Path) -> None:
        buf = io.BytesIO()
        self.model.save(buf)
        atomic_write_bytes(run_path / SNAPSHOT_DIR / f"model-{self.env_steps:010d}.zip", buf.getvalue())

    def close(self) -> None:
        if self.model is not None and self.model.env is not None:
            self.model.env.close()


def _write(run_path: Path, name: str, data: bytes, key: str) -> dict:
    atomic_write_bytes(run_path / SB3_DIR / name, data)
    return {key: name, f"{key}_sha256": hashlib.sha256(data).hexdigest()}


def _checked(run_path: Path, name: str, sha256: str) -> bytes:
    """The bytes of a file this run wrote, refused unless its hash is the one the checkpoint recorded."""
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise ValueError(f"bad SB3 file name {name!r}")
    path = run_path / SB3_DIR / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PolicygenError(f"{path}: cannot read the SB3 checkpoint ({e.strerror or e})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PolicygenError(f"{path}: not the file this run's checkpoint recorded (SHA-256 differs); "
                             f"refusing to unpickle it")
    return data


def _prune(run_path: Path, keep: set) -> None:
    """Drop SB3 files older than the previous checkpoint's (which latest.safetensors may still name)."""
    files = sorted((run_path / SB3_DIR).glob("*-*.*"))
    stamps = sorted({p.name.split("-")[1].split(".")[0] for p in files})
    for p in files:
        if p.name not in keep and p.name.split("-")[1].split(".")[0] not in stamps[-2:]:
            p.unlink(missing_ok=True)


class _OffPolicy(SB3Algorithm):
    Config = OffPolicyConfig
    uses_noise = True

    def _kwargs(self, rc: RunConfig) -> dict:
        c = self.cfg
        kw = dict(policy="MlpPolicy", batch_size=c.batch_size, gamma=c.gamma, tau=c.tau, train_freq=c.train_freq,
                  gradient_steps=c.gradient_steps, learning_starts=min(c.learning_starts, rc.steps // 10),
                  buffer_size=max(1, min(c.buffer_size, rc.steps)), policy_kwargs={"net_arch": list(c.hidden)})
        if c.learning_rate is not None:
            kw["learning_rate"] = c.learning_rate
        if self.uses_noise and c.action_noise > 0:
            from stable_baselines3.common.noise import NormalActionNoise

            high = np.asarray(self.info.action_high)
            kw["action_noise"] = NormalActionNoise(np.zeros_like(high), c.action_noise * high)
        return kw


class TD3(_OffPolicy):
    name, sb3_class = "td3", "TD3"


class SAC(_OffPolicy):
    name, sb3_class, uses_noise = "sac", "SAC", False


class DDPG(_OffPolicy):
    name, sb3_class = "ddpg", "DDPG"


class ARSSB3(SB3Algorithm):
    name, sb3_class = "ars-sb3", "ARS"
    Config = ARSSB3Config
    # RL-Zoo's hyperparams/ars.yml for the MuJoCo tasks policygen benchmarks (bench/ars_vs_sb3.py)
    presets = {
        "default": {},
        "hopper": {"n_delta": 8, "n_top": 4, "learning_rate": 0.01, "delta_std": 0.025, "alive_bonus_offset": -1.0},
        "swimmer": {"n_delta": 1, "n_top": 1, "learning_rate": 0.02, "delta_std": 0.01, "normalize": False},
    }

    @staticmethod
    def preset_for(env_id: str) -> str:
        return {"Hopper": "hopper", "Swimmer": "swimmer"}.get(env_id.split("-")[0], "default")

    def _kwargs(self, rc: RunConfig) -> dict:
        c = self.cfg
        if not 1 <= c.n_top <= c.n_delta:
            raise PolicygenError(f"n_top must be in 1..n_delta={c.n_delta}, got {c.n_top}")
        return dict(policy="LinearPolicy" if c.linear else "MlpPolicy", n_delta=c.n_delta, n_top=c.n_top,
                    learning_rate=c.learning_rate, delta_std=c.delta_std, alive_bonus_offset=c.alive_bonus_offset)

    def row(self) -> dict:
        return {"iteration": int(self.model._n_updates)}
