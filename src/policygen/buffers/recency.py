"""A FIFO buffer of evaluated policies, sampled with a preference for the newest (GoGePo's replay buffer).

The k-th newest entry (k = 1 for the newest) is drawn with probability proportional to ``(1/k)^alpha``;
with alpha = 1.1 and 10,000 entries the 100 newest get about 65% of the draws. Sampling is with
replacement and uses only the generator passed in, so it is reproducible and resumable.

Storage grows in blocks up to the capacity (a full 10k buffer of 70k-parameter policies is 2.8 GB in
float32); ``dtype=torch.float16`` halves that at a relative rounding error of ~5e-4 per weight.

With ``rebase_spec`` each entry also keeps the observation normalisation (mean, std) its theta acts under,
and ``gather`` rewrites the first layers to the normalisation set by ``set_obs_norm`` (exact,
``flat_mlp.rebase_inputs``): a stored theta then behaves as the policy that earned its return did, while the
running statistics move. Done at gather, not in place, because float16 storage would round away the small
change each iteration makes.
"""

from __future__ import annotations

import numpy as np
import torch

from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, rebase_inputs

FIELDS = ("train_return", "return", "length")


def recency_probs(n: int, alpha: float) -> np.ndarray:
    """Probabilities (n,) of the 1st, 2nd, ..., n-th newest entry: ``(1/k)^alpha`` normalised."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


class RecencyBuffer:
    """Holds ``theta (P,)``, achieved ``train_return`` (the run's convention), standard ``return``,
    episode ``length`` and the ``command (command_dim,)`` that produced each policy."""

    def __init__(self, param_dim: int, capacity: int = 10_000, alpha: float = 1.1, command_dim: int = 1,
                 dtype: torch.dtype = torch.float32, block: int = 256, rebase_spec: MLPSpec | None = None):
        if int(capacity) < 1:
            raise PolicygenError(f"buffer capacity must be a positive integer, got {capacity!r}")
        if not float(alpha) >= 0:
            raise PolicygenError(f"recency alpha must be >= 0 (0 is uniform), got {alpha!r}")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise PolicygenError(f"buffer dtype {dtype} is not a float dtype (float32, float16, bfloat16)")
        self.param_dim, self.capacity, self.alpha = int(param_dim), int(capacity), float(alpha)
        self.command_dim, self.dtype, self.block = int(command_dim), dtype, int(block)
        self.thetas = torch.zeros(0, self.param_dim, dtype=dtype)
        self.commands = torch.zeros(0, self.command_dim)
        self.values = {k: torch.zeros(0, dtype=torch.float64) for k in FIELDS}
        self.rebase_spec = rebase_spec
        in_dim = rebase_spec.obs_dim if rebase_spec is not None else 0
        self.obs_norms = torch.zeros(0, 2, in_dim, dtype=torch.float64)  # per entry: (mean, std) it acts under
        self.obs_norm_now: torch.Tensor | None = None  # (2, in_dim) that gather re-bases to
        self.size = 0
        self.head = 0  # index the next entry is written to

    def __len__(self) -> int:
        return self.size

    def _grow(self, need: int) -> None:
        n = self.thetas.shape[0]
        if need <= n:
            return
        new = min(self.capacity, max(need, 2 * n, self.block))
        self.thetas = torch.cat([self.thetas, self.thetas.new_zeros(new - n, self.param_dim)])
        self.commands = torch.cat([self.commands, self.commands.new_zeros(new - n, self.command_dim)])
        self.values = {k: torch.cat([v, v.new_zeros(new - n)]) for k, v in self.values.items()}
        self.obs_norms = torch.cat([self.obs_norms, self.obs_norms.new_ones(new - n, *self.obs_norms.shape[1:])])

    def add(self, thetas: torch.Tensor, train_returns, returns, lengths, commands, obs_norm=None) -> None:
        """Append B entries (row B-1 becomes the newest); the oldest are dropped beyond capacity.
        ``obs_norm = (mean, std)``: the normalisation the thetas ran under (required with ``rebase_spec``)."""
        thetas = torch.as_tensor(thetas).detach().reshape(-1, self.param_dim)
        b = thetas.shape[0]
        if (obs_norm is None) != (self.rebase_spec is None):
            raise PolicygenError("a re-basing buffer needs the thetas' obs_norm=(mean, std), and only it takes one")
        norm = self._norm_tensor(obs_norm) if obs_norm is not None else self.obs_norms.new_zeros(2, 0)
        cmd = torch.as_tensor(np.asarray(commands, dtype=np.float32)).reshape(b, self.command_dim)
        vals = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(b)
                for k, v in zip(FIELDS, (train_returns, returns, lengths), strict=True)}
        if b > self.capacity:  # only the newest `capacity` rows survive
            thetas, cmd = thetas[-self.capacity:], cmd[-self.capacity:]
            vals = {k: v[-self.capacity:] for k, v in vals.items()}
            b = self.capacity
        self._grow(min(self.capacity, self.size + b))
        idx = (self.head + torch.arange(b)) % self.capacity
        self.thetas[idx] = thetas.to(self.dtype)
        self.commands[idx] = cmd
        for k, v in vals.items():
            self.values[k][idx] = v
        self.obs_norms[idx] = norm
        self.head = (self.head + b) % self.capacity
        self.size = min(self.capacity, self.size + b)

    def newest_indices(self, n: int | None = None) -> torch.Tensor:
        """Storage indices of the ``n`` newest entries, newest first."""
        n = self.size if n is None else min(int(n), self.size)
        return (self.head - 1 - torch.arange(n)) % self.capacity

    def probabilities(self) -> np.ndarray:
        """Sampling probability of the entries in newest-first order (see ``newest_indices``)."""
        return recency_probs(self.size, self.alpha)

    def sample(self, n: int, generator: torch.Generator | np.random.Generator) -> dict[str, torch.Tensor]:
        """``n`` entries drawn with replacement by recency: theta (n, P) float32, command (n, C),
        train_return / return / length (n,) float64, index (n,) storage index."""
        if self.size == 0:
            raise PolicygenError("cannot sample from an empty buffer; add evaluated policies first")
        p = self.probabilities()
        if isinstance(generator, np.random.Generator):
            ranks = torch.as_tensor(generator.choice(self.size, size=int(n), p=p))
        else:
            ranks = torch.multinomial(torch.as_tensor(p), int(n), replacement=True, generator=generator)
        return self.gather(self.newest_indices()[ranks])

    def sample_by_return(self, n: int, generator: torch.Generator, bins: int = 20) -> dict[str, torch.Tensor]:
        """``n`` entries drawn with replacement evenly over achieved return: [min, max] of the buffered
        ``train_return`` is cut into ``bins`` equal bins, each draw picks a non-empty bin uniformly, then an
        entry of it uniformly. Rare returns (between a task's failing and solved policies) are drawn as
        often as common ones. Same fields as ``sample``."""
        if self.size == 0:
            raise PolicygenError("cannot sample from an empty buffer; add evaluated policies first")
        r = self.values["train_return"][:self.size]
        lo, hi = float(r.min()), float(r.max())
        b = ((r - lo) / max(hi - lo, 1e-12) * bins).long().clamp_(0, bins - 1)
        order = torch.argsort(b, stable=True)  # entries grouped by bin
        counts = torch.bincount(b, minlength=bins)
        filled = torch.nonzero(counts).ravel()
        starts = torch.cumsum(counts, 0) - counts
        pick = filled[torch.randint(len(filled), (int(n),), generator=generator)]
        within = (torch.rand(int(n), generator=generator, dtype=torch.float64) * counts[pick]).long()
        return self.gather(order[starts[pick] + within])

    def set_obs_norm(self, mean, std) -> None:
        """The normalisation ``gather`` expresses thetas in from now on (the engine's current statistics)."""
        self.obs_norm_now = self._norm_tensor((mean, std))

    def _norm_tensor(self, norm) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(norm, dtype=np.float64))
        if t.shape != (2, self.obs_norms.shape[-1]):
            raise PolicygenError(f"obs_norm must be (mean, std) of {self.obs_norms.shape[-1]} observation "
                                 f"dimensions, got shape {tuple(t.shape)}")
        return t

    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: v[idx] for k, v in self.values.items()}
        thetas = self.thetas[idx].float()
        if self.rebase_spec is not None and self.obs_norm_now is not None:
            norms = self.obs_norms[idx]
            thetas = rebase_inputs(self.rebase_spec, thetas, (norms[:, 0], norms[:, 1]),
                                   (self.obs_norm_now[0], self.obs_norm_now[1]))
        return {"theta": thetas, "command": self.commands[idx], "index": idx, **out}

    def state_dict(self) -> dict:
        n = self.size
        return {"param_dim": self.param_dim, "capacity": self.capacity, "alpha": self.alpha,
                "command_dim": self.command_dim, "size": n, "head": self.head,
                "thetas": self.thetas[:n].clone(), "commands": self.commands[:n].clone(),
                "values": {k: v[:n].clone() for k, v in self.values.items()},
                **({"obs_norms": self.obs_norms[:n].clone()} if self.rebase_spec is not None else {}),
                **({"obs_norm_now": self.obs_norm_now.clone()} if self.obs_norm_now is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        if int(state["param_dim"]) != self.param_dim or int(state["command_dim"]) != self.command_dim:
            raise PolicygenError(f"buffer state holds {state['param_dim']}-parameter policies with "
                                 f"{state['command_dim']}-d commands; this buffer expects {self.param_dim} "
                                 f"and {self.command_dim}")
        self.capacity, self.alpha = int(state["capacity"]), float(state["alpha"])
        self.size, self.head = int(state["size"]), int(state["head"])
        n = self.size
        self.thetas = torch.as_tensor(state["thetas"]).to(self.dtype).reshape(n, self.param_dim).clone()
        self.commands = torch.as_tensor(state["commands"]).float().reshape(n, self.command_dim).clone()
        self.values = {k: torch.as_tensor(state["values"][k]).double().reshape(n).clone() for k in FIELDS}
        if self.rebase_spec is not None:
            if "obs_norms" not in state:
                raise PolicygenError("this buffer state has no per-policy observation statistics; it was saved "
                                     "without rebase_buffer, so it cannot be loaded into a re-basing buffer")
            self.obs_norms = torch.as_tensor(state["obs_norms"]).double().reshape(n, *self.obs_norms.shape[1:]).clone()
            now = state.get("obs_norm_now")
            self.obs_norm_now = None if now is None else torch.as_tensor(now).double().clone()
        else:
            self.obs_norms = self.obs_norms.new_zeros(n, *self.obs_norms.shape[1:])
