"""Deterministic MLP policies whose parameters live in one flat vector.

Layout: ``W1, b1, W2, b2, ...`` with every ``W`` stored as ``(out, in)`` row-major, exactly the order of
``torch.nn.utils.parameters_to_vector`` of the equivalent ``nn.Sequential`` of ``nn.Linear`` layers.
A batch of B different vectors runs in one batched matmul per layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from policygen.errors import PolicygenError

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
OUTPUTS = ("tanh", "clip", "none")


@dataclass(frozen=True)
class MLPSpec:
    """Architecture of a flat-parameter policy."""

    obs_dim: int
    """Size of the (flat) observation."""
    act_dim: int
    """Size of the (Box) action."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths; ``()`` is a linear policy."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    output: str = "tanh"
    """Output map: ``tanh`` gives ``tanh(out) * action_high``; ``clip`` clips ``out`` to the bounds
    (ARS's linear policies); ``none`` returns ``out`` unchanged."""
    action_high: tuple[float, ...] = field(default=())
    """Per-dimension action bound (symmetric Box); empty means 1.0 everywhere."""
    bias: bool = True
    """Whether every layer has a bias."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "action_high", tuple(float(a) for a in self.action_high))
        if self.activation not in ACTIVATIONS:
            raise PolicygenError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            raise PolicygenError(f"output {self.output!r} is not one of {list(OUTPUTS)}")
        if self.obs_dim <= 0 or self.act_dim <= 0 or any(h <= 0 for h in self.hidden):
            raise PolicygenError(f"layer sizes must be positive, got obs {self.obs_dim}, hidden "
                                 f"{self.hidden}, act {self.act_dim}")
        if self.action_high and len(self.action_high) != self.act_dim:
            raise PolicygenError(f"action_high has {len(self.action_high)} entries, expected {self.act_dim}")

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(out, in)`` of every linear layer, input layer first."""
        sizes = [self.obs_dim, *self.hidden, self.act_dim]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    @property
    def input_layer_size(self) -> int:
        """Parameters of the first layer (W1 and b1), the head of the flat vector."""
        out, inp = self.layer_shapes[0]
        return out * inp + (out if self.bias else 0)

    @property
    def num_params(self) -> int:
        return sum(o * i + (o if self.bias else 0) for o, i in self.layer_shapes)

    def high_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        high = self.action_high or (1.0,) * self.act_dim
        return torch.tensor(high, dtype=dtype)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["action_high"] = list(self.action_high)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MLPSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        try:
            return cls(**known)
        except TypeError as e:
            raise PolicygenError(f"not a policy spec: {d!r} ({e})") from None

    def check_thetas(self, thetas: torch.Tensor) -> None:
        if thetas.shape[-1] != self.num_params:
            raise PolicygenError(
                f"parameter vector has length {thetas.shape[-1]}, but the policy {self.describe()} "
                f"needs exactly {self.num_params}")

    def describe(self) -> str:
        sizes = [self.obs_dim, *self.hidden, self.act_dim]
        return "-".join(str(s) for s in sizes) + f" ({self.activation}, {self.output} output)"


NOISE_SCALINGS = ("uniform", "fan_in")


def noise_scales(spec: MLPSpec, scaling: str) -> torch.Tensor:
    """Per-parameter multiplier (P,) of the exploration noise sigma, in the flat layout.

    uniform: 1 on every weight (the papers' theta + sigma * eps). fan_in: 1 / sqrt(fan_in) on each layer's
    weights and bias, so sigma is the noise a layer adds to each unit's pre-activation per unit of input
    RMS: with uniform noise a 256-wide layer gets 16x the pre-activation noise of a 1-input one.
    """
    if scaling not in NOISE_SCALINGS:
        raise PolicygenError(f"noise scaling {scaling!r} is not one of {list(NOISE_SCALINGS)}")
    parts = []
    for out, inp in spec.layer_shapes:
        f = 1.0 if scaling == "uniform" else inp ** -0.5
        parts.append(torch.full((out * inp + (out if spec.bias else 0),), f))
    return torch.cat(parts)


def unflatten(spec: MLPSpec, thetas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Views ``[(W (B, out, in), b (B, out) or None), ...]`` into ``thetas (B, P)``."""
    spec.check_thetas(thetas)
    layers, i = [], 0
    batch = thetas.shape[:-1]
    for out, inp in spec.layer_shapes:
        w = thetas[..., i:i + out * inp].reshape(*batch, out, inp)
        i += out * inp
        b = None
        if spec.bias:
            b = thetas[..., i:i + out]
            i += out
        layers.append((w, b))
    return layers


def rebase_inputs(spec: MLPSpec, thetas: torch.Tensor, old: tuple[np.ndarray, np.ndarray],
                  new: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """``thetas (B, P)`` rewritten so that, fed observations normalised with ``new = (mean, std)``, they act
    exactly as they did with ``old``: ``W1' = W1 * new_std / old_std`` (per input), ``b1' = b1 + W1 @ ((new_mean
    - old_mean) / old_std)``. Exact because the normalisation is affine and unclipped. A buffer of policies
    kept this way keeps its returns true while the running statistics move (a stored theta otherwise becomes
    another policy). Only the first ``spec.input_layer_size`` columns are read and changed, so a (B, that
    many) block of first layers may be passed instead of whole vectors. ``old`` and ``new`` are (in_dim,)
    arrays, or (B, in_dim) ones giving each row its own statistics."""
    if not spec.bias:
        raise PolicygenError("re-basing the input normalisation needs a first-layer bias")
    out_dim, in_dim = spec.layer_shapes[0]
    if thetas.shape[-1] < spec.input_layer_size:
        raise PolicygenError(f"expected at least the {spec.input_layer_size} first-layer parameters, got "
                             f"{thetas.shape[-1]}")
    m0, s0, m1, s1 = (torch.as_tensor(np.asarray(x, dtype=np.float64)) for x in (*old, *new))
    w = thetas[..., :out_dim * in_dim].double().reshape(*thetas.shape[:-1], out_dim, in_dim)
    b = thetas[..., out_dim * in_dim:spec.input_layer_size].double()
    result = thetas.clone()
    scale = (s1 / s0).unsqueeze(-2)  # (..., 1, in): one factor per input column
    shift = (w @ ((m1 - m0) / s0).unsqueeze(-1)).squeeze(-1)  # (..., out)
    result[..., :out_dim * in_dim] = (w * scale).reshape(*thetas.shape[:-1], -1).to(thetas.dtype)
    result[..., out_dim * in_dim:spec.input_layer_size] = (b + shift).to(thetas.dtype)
    return result


@functools.lru_cache(maxsize=256)
def _high(spec: MLPSpec, dtype: torch.dtype) -> torch.Tensor:
    # cached: building it every step of a rollout cost ~10 us. Built outside inference mode, or a first
    # call from the rollout engine would cache an inference tensor that autograd (evaluators) refuses.
    with torch.inference_mode(False):
        return spec.high_tensor(dtype)


def _output(spec: MLPSpec, x: torch.Tensor) -> torch.Tensor:
    if spec.output == "none":
        return x
    high = _high(spec, x.dtype).to(x.device)
    if spec.output == "tanh":
        return torch.tanh(x) * high
    if spec.output == "clip":
        return torch.maximum(torch.minimum(x, high), -high)
    return x


def forward_layers(spec: MLPSpec, layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                   obs: torch.Tensor) -> torch.Tensor:
    """Forward through pre-split layers. ``obs (B, S, obs_dim)`` with weights ``(B, out, in)``.

    Works on columns, ``x (B, in, S) -> W @ x``: a batched matrix-vector product over contiguous ``W``,
    which is faster than ``x @ W.T`` for the S=1 of the rollout engine.
    """
    act = ACTIVATIONS[spec.activation]
    x = obs.transpose(1, 2)
    for k, (w, b) in enumerate(layers):
        x = torch.baddbmm(b.unsqueeze(-1), w, x) if b is not None else w @ x
        if k < len(layers) - 1:
            x = act(x)
    return _output(spec, x.transpose(1, 2))


_NP_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x, out: np.maximum(x, 0, out=out)}


class NumpyPolicies:
    """Inference-only forward of the policies in the rows of one float32 weight buffer ``rows (N, P)``.

    The rollout engine's forward. The layer views into ``rows`` and the action bound are built once, so a
    step costs only the products (per call they cost ~20 us, more than a linear policy's whole forward).
    numpy's batched matmul runs the B matrix-vector products as BLAS gemv; torch's ``bmm`` with a single
    column is ~10x slower on CPU (64 policies of 2x256: 0.27 ms vs 3.3 ms a layer), and that product is
    most of the engine's cost beside the physics.
    """

    def __init__(self, spec: MLPSpec, rows: np.ndarray):
        if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != spec.num_params:
            raise PolicygenError(f"weight rows must be float32 (N, {spec.num_params}), got {rows.dtype} "
                                 f"{rows.shape}")
        self.spec, self.rows = spec, rows
        self.layers = unflatten(spec, rows)
        self.act = _NP_ACTIVATIONS[spec.activation]
        self.high = np.asarray(spec.action_high or (1.0,) * spec.act_dim, dtype=np.float32)

    def __call__(self, obs: np.ndarray, n: int | None = None) -> np.ndarray:
        """Actions ``(n, act_dim)`` of rows ``0..n-1`` (all rows by default) on float32 ``obs (n, obs_dim)``."""
        n = len(self.rows) if n is None else n
        x = obs[:, :, None]
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            x = np.matmul(w[:n], x)
            if b is not None:
                x += b[:n, :, None]
            if k < last:
                self.act(x, out=x)
        x = x[:, :, 0]
        if self.spec.output == "tanh":
            return np.multiply(np.tanh(x, out=x), self.high, out=x)
        if self.spec.output == "clip":
            return np.clip(x, -self.high, self.high, out=x)
        return x


def act_numpy(spec: MLPSpec, thetas: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Actions of float32 ``thetas (B, P)`` on ``obs (B, obs_dim)`` -> ``(B, act_dim)`` (numpy, no autograd)."""
    return NumpyPolicies(spec, np.ascontiguousarray(thetas, dtype=np.float32))(obs.astype(np.float32, copy=False))


def forward(spec: MLPSpec, thetas: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Actions of B policies, differentiable in ``thetas``.

    thetas (B, P); obs (B, obs_dim) -> (B, act_dim), each policy on its own observation; or
    obs (B, S, obs_dim) -> (B, S, act_dim), each policy on its own S observations; or
    obs (S, obs_dim) shared by all policies (e.g. probing states) -> (B, S, act_dim).
    """
    if thetas.dim() != 2:
        raise PolicygenError(f"thetas must be (B, P), got shape {tuple(thetas.shape)}")
    if obs.shape[-1] != spec.obs_dim:
        raise PolicygenError(f"observation has size {obs.shape[-1]}, the policy expects {spec.obs_dim}")
    layers = unflatten(spec, thetas)
    if obs.dim() == 2 and obs.shape[0] == thetas.shape[0]:
        return forward_layers(spec, layers, obs.unsqueeze(1)).squeeze(1)
    if obs.dim() == 2:
        obs = obs.unsqueeze(0).expand(thetas.shape[0], -1, -1)
    return forward_layers(spec, layers, obs)


def init_thetas(spec: MLPSpec, n: int, generator: torch.Generator | None = None,
                zeros: bool = False) -> torch.Tensor:
    """``n`` vectors initialised like ``nn.Linear`` (uniform +-1/sqrt(fan_in)), or zeros (ARS)."""
    if zeros:
        return torch.zeros(n, spec.num_params)
    parts = []
    for out, inp in spec.layer_shapes:
        bound = 1.0 / inp ** 0.5
        parts.append((torch.rand(n, out * inp, generator=generator) * 2 - 1) * bound)
        if spec.bias:
            parts.append((torch.rand(n, out, generator=generator) * 2 - 1) * bound)
    return torch.cat(parts, dim=1)


class _Output(nn.Module):
    def __init__(self, spec: MLPSpec):
        super().__init__()
        self.kind = spec.output
        self.register_buffer("high", spec.high_tensor())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "tanh":
            return torch.tanh(x) * self.high
        if self.kind == "clip":
            return torch.maximum(torch.minimum(x, self.high), -self.high)
        return x


def to_module(spec: MLPSpec, theta: torch.Tensor) -> nn.Sequential:
    """A plain ``nn.Sequential`` with the weights of one flat vector ``theta (P,)``."""
    spec.check_thetas(theta)
    mods: list[nn.Module] = []
    for k, (out, inp) in enumerate(spec.layer_shapes):
        mods.append(nn.Linear(inp, out, bias=spec.bias))
        if k < len(spec.layer_shapes) - 1:
            mods.append(nn.Tanh() if spec.activation == "tanh" else nn.ReLU())
    mods.append(_Output(spec))
    net = nn.Sequential(*mods)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    params = [p for m in linears for p in m.parameters()]
    nn.utils.vector_to_parameters(theta.detach().to(torch.float32).clone(), params)
    return net
