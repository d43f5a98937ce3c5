"""UDRLPG's buffers of (return, theta): return buckets, and a plain FIFO for the variance ablation.

Returns are stored raw and scaled as ``s = (max(R, r_min) - r_min) / (r_max - r_min)``: returns below
``r_min`` are clipped to 0, returns above ``r_max`` give ``s > 1`` (the buffer then grows buckets above 1
instead of clipping, so better policies are never lumped together with the best of the hand-set range).

Bucket ``k`` holds the scaled returns ``[k / n, (k + 1) / n)`` (``s == 1`` goes to bucket ``n - 1``).
Sampling probabilities (``BucketBuffer.probabilities`` returns them exactly):

* order the ``m`` non-empty buckets by return, rank ``1`` (lowest) .. ``m`` (highest);
* bucket weight ``w(rank)``: ``exp``: ``exp(exp_coef * (rank - m))`` (top bucket 1);
  ``reciprocal``: ``1 / (m - rank + 1)`` (top 1, second 1/2, ...); ``uniform``: 1;
* ``P(bucket) = (1 - u) * w / sum(w) + u / m`` with ``u = uniform_mix`` (default 0: the paper's law; a share
  ``u`` of the draws covers every return region, so G is trained on low commands too), then
  ``P(entry) = P(bucket) / len(bucket)``.

So how often a return region is drawn does not depend on how many policies reached it, which is the
point of the buckets (a FIFO draws regions in proportion to their policy counts).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from policygen.errors import PolicygenError

WEIGHTINGS = ("exp", "reciprocal", "uniform")
REPLACEMENTS = ("newest", "reject")


class _ReturnScale:
    """The map raw return <-> scaled return shared by both buffers, and the seeded sampler."""

    def __init__(self, r_min: float, r_max: float, seed: int):
        r_min, r_max = float(r_min), float(r_max)
        if not (math.isfinite(r_min) and math.isfinite(r_max)) or r_min >= r_max:
            raise PolicygenError(f"return range must be finite with min < max, got min {r_min}, max {r_max}")
        self.r_min, self.r_max = r_min, r_max
        self.rng = np.random.default_rng(seed)
        self.best_return = -math.inf
        """Highest raw return ever offered to ``add``, stored or not."""

    def scale(self, returns) -> np.ndarray:
        r = np.asarray(returns, dtype=np.float64)
        return (np.maximum(r, self.r_min) - self.r_min) / (self.r_max - self.r_min)

    def unscale(self, scaled) -> np.ndarray:
        return self.r_min + np.asarray(scaled, dtype=np.float64) * (self.r_max - self.r_min)

    def _bins(self, returns, n: int) -> np.ndarray:
        """Index of each raw return among ``n`` equal bins of scaled [0, 1] (``s == 1`` in the top bin)."""
        s = self.scale(returns)
        return np.where(s == 1.0, n - 1, np.floor(s * n).astype(np.int64))

    def stored_returns(self) -> np.ndarray:
        """Raw returns of the policies held now (N,)."""
        raise NotImplementedError

    def filled(self, returns) -> tuple[np.ndarray, np.ndarray]:
        """For each raw return: its bucket index and whether that bucket holds a policy now ((N,), (N,))."""
        k = np.atleast_1d(self.bucket_of(returns))
        full = set(np.unique(self.bucket_of(self.stored_returns())).tolist()) if len(self) else set()
        return k, np.array([int(i) in full for i in k], dtype=bool)

    @property
    def best_scaled(self) -> float:
        """Scaled best return seen (0 before any)."""
        return float(self.scale(self.best_return)) if math.isfinite(self.best_return) else 0.0

    def _entry_lists(self) -> list[list[tuple[int, float, torch.Tensor]]]:
        """The lists holding the stored entries ``(arrival, raw return, theta)``."""
        raise NotImplementedError

    def map_heads(self, size: int, fn) -> None:
        """Rewrite the first ``size`` parameters of every stored theta, in place, with ``fn((N, size)) ->
        (N, size)`` in one batched call (``flat_mlp.rebase_inputs`` on the first layers)."""
        thetas = [e[2] for lst in self._entry_lists() for e in lst]
        if thetas:
            heads = fn(torch.stack([t[:size] for t in thetas]))
            for t, h in zip(thetas, heads, strict=True):
                t[:size] = h

    def _scale_state(self) -> dict:
        return {"r_min": self.r_min, "r_max": self.r_max, "best_return": self.best_return,
                "rng": self.rng.bit_generator.state}

    def _load_scale_state(self, state: dict) -> None:
        self.r_min, self.r_max = float(state["r_min"]), float(state["r_max"])
        self.best_return = float(state["best_return"])
        self.rng.bit_generator.state = state["rng"]


def _as_batch(thetas, returns) -> tuple[torch.Tensor, np.ndarray]:
    t = torch.as_tensor(thetas, dtype=torch.float32).detach()
    t = t.unsqueeze(0) if t.dim() == 1 else t
    r = np.atleast_1d(np.asarray(returns, dtype=np.float64))
    if t.dim() != 2 or len(t) != len(r):
        raise PolicygenError(f"add needs thetas (N, P) and returns (N,), got {tuple(t.shape)} and {r.shape}")
    if not np.isfinite(r).all():
        raise PolicygenError(f"returns must be finite, got {r[~np.isfinite(r)][:3]}")
    return t.cpu(), r


class BucketBuffer(_ReturnScale):
    """Return buckets of at most ``capacity`` policies each, sampled by bucket rank (see module doc).

    n_buckets: buckets over the scaled range [0, 1] (UDRLPG: 800); more are added above 1 as needed.
    capacity: policies a bucket holds at most (UDRLPG meant 1; its code kept 2).
    replace: when a full bucket receives a policy, ``newest`` drops the bucket's oldest policy for it,
        ``reject`` drops the newcomer (the official behaviour: early policies then stay forever).
    weighting: bucket weight by rank, ``exp``, ``reciprocal`` or ``uniform``; exp_coef: the 0.3 of ``exp``.
    uniform_mix: share of the bucket probability spread evenly over the non-empty buckets (0..1).
    max_age: if > 0, a policy is dropped once ``max_age`` newer ones have arrived, and the best return
        (the command c*) is the best of those still held; 0 (the paper) keeps policies until replaced, and
        c* is the best return ever seen.
    """

    def __init__(self, r_min: float = 0.0, r_max: float = 1.0, n_buckets: int = 800, capacity: int = 1,
                 replace: str = "newest", weighting: str = "exp", exp_coef: float = 0.3, seed: int = 0,
                 uniform_mix: float = 0.0, max_age: int = 0):
        super().__init__(r_min, r_max, seed)
        if int(n_buckets) != n_buckets or n_buckets < 1:
            raise PolicygenError(f"bucket count must be an integer >= 1, got {n_buckets!r}")
        if int(capacity) != capacity or capacity < 1:
            raise PolicygenError(f"bucket capacity must be an integer >= 1, got {capacity!r}")
        if replace not in REPLACEMENTS:
            raise PolicygenError(f"replacement rule {replace!r} is not one of {list(REPLACEMENTS)}")
        if weighting not in WEIGHTINGS:
            raise PolicygenError(f"bucket weighting {weighting!r} is not one of {list(WEIGHTINGS)}")
        if not (math.isfinite(exp_coef) and exp_coef >= 0):
            raise PolicygenError(f"exp_coef must be a finite number >= 0, got {exp_coef!r}")
        if not 0.0 <= uniform_mix <= 1.0:
            raise PolicygenError(f"uniform_mix must be a number in [0, 1], got {uniform_mix!r}")
        if int(max_age) != max_age or max_age < 0:
            raise PolicygenError(f"max_age must be an integer >= 0 (0: never drop by age), got {max_age!r}")
        self.max_age = int(max_age)
        self.n_buckets, self.capacity = int(n_buckets), int(capacity)
        self.replace, self.weighting, self.exp_coef = replace, weighting, float(exp_coef)
        self.uniform_mix = float(uniform_mix)
        self.buckets: dict[int, list[tuple[int, float, torch.Tensor]]] = {}
        """bucket index -> entries ``(arrival number, raw return, theta (P,))``, oldest first."""
        self.arrivals = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    @property
    def n_bins(self) -> int:
        """Buckets over scaled [0, 1] (the name the FIFO ablation's reporting grid shares)."""
        return self.n_buckets

    @property
    def num_buckets(self) -> int:
        """Buckets in use by the geometry: ``n_buckets``, or more once returns went above the range."""
        return max(self.n_buckets, max(self.buckets, default=-1) + 1)

    def bucket_of(self, returns) -> np.ndarray:
        """Bucket index of each raw return (``s == 1`` belongs to the top bucket of [0, 1])."""
        return self._bins(returns, self.n_buckets)

    def stored_returns(self) -> np.ndarray:
        return np.array([e[1] for b in self.buckets.values() for e in b], dtype=np.float64)

    def _entry_lists(self) -> list[list[tuple[int, float, torch.Tensor]]]:
        return list(self.buckets.values())

    def add(self, thetas, returns) -> np.ndarray:
        """Offer policies ``thetas (N, P)`` with raw ``returns (N,)``; returns which were stored (N,)."""
        t, r = _as_batch(thetas, returns)
        stored = np.zeros(len(r), dtype=bool)
        for i, k in enumerate(self.bucket_of(r)):
            self.best_return = max(self.best_return, float(r[i]))
            stored[i] = self._insert(int(k), (self.arrivals, float(r[i]), t[i].clone()))
            self.arrivals += 1
        if self.max_age:
            self._drop_older_than(self.arrivals - self.max_age)
        return stored

    def _drop_older_than(self, arrival: int) -> None:
        for k in list(self.buckets):
            kept = [e for e in self.buckets[k] if e[0] >= arrival]
            if kept:
                self.buckets[k] = kept
            else:
                del self.buckets[k]

    @property
    def best_scaled(self) -> float:
        """Scaled best return: seen ever, or (with ``max_age``) held now; 0 before any."""
        if self.max_age and self.buckets:
            return float(self.scale(self.stored_returns().max()))
        return super().best_scaled

    def _insert(self, k: int, entry: tuple[int, float, torch.Tensor]) -> bool:
        bucket = self.buckets.setdefault(k, [])
        if len(bucket) >= self.capacity:
            if self.replace == "reject":
                return False
            bucket.pop(0)  # oldest first
        bucket.append(entry)
        return True

    def bucket_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty bucket indices in return order, and their probabilities (sum 1)."""
        ks = np.array(sorted(self.buckets), dtype=np.int64)
        m = len(ks)
        rank = np.arange(1, m + 1, dtype=np.float64)
        if self.weighting == "exp":
            w = np.exp(self.exp_coef * (rank - m))
        elif self.weighting == "reciprocal":
            w = 1.0 / (m - rank + 1)
        else:
            w = np.ones(m)
        if not m:
            return ks, w
        return ks, (1.0 - self.uniform_mix) * w / w.sum() + self.uniform_mix / m

    def probabilities(self) -> list[tuple[int, float, float]]:
        """Exact draw probability of every stored policy: ``[(arrival number, raw return, p), ...]``."""
        ks, p = self.bucket_weights()
        return [(a, r, float(pk) / len(self.buckets[k])) for k, pk in zip(ks.tolist(), p, strict=True)
                for a, r, _ in self.buckets[k]]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws with replacement -> (scaled returns (n,), thetas (n, P)), seeded."""
        if not self.buckets:
            raise PolicygenError("cannot sample from an empty bucket buffer; add policies first")
        ks, p = self.bucket_weights()
        picks = self.rng.choice(len(ks), size=int(n), p=p)
        entries = []
        for j in picks:
            bucket = self.buckets[int(ks[j])]
            entries.append(bucket[int(self.rng.integers(len(bucket)))])
        scaled = torch.tensor(self.scale([e[1] for e in entries]), dtype=torch.float32)
        return scaled, torch.stack([e[2] for e in entries])

    def rescale(self, r_max: float) -> None:
        """Widen the range to ``[r_min, r_max]`` and re-bucket every policy (learned ranges).

        Entries that now share a bucket are re-inserted oldest first, so the replacement rule decides
        which survive exactly as if they had arrived under the new range.
        """
        if not (math.isfinite(r_max) and r_max > self.r_min):
            raise PolicygenError(f"new return max must be finite and > min {self.r_min}, got {r_max}")
        entries = sorted((e for b in self.buckets.values() for e in b), key=lambda e: e[0])
        self.r_max, self.buckets = float(r_max), {}
        for e in entries:
            self._insert(int(self.bucket_of(e[1])), e)

    def state_dict(self) -> dict:
        entries = sorted((e for b in self.buckets.values() for e in b), key=lambda e: e[0])
        return {**self._scale_state(), "arrivals": self.arrivals,
                "order": np.array([e[0] for e in entries], dtype=np.int64),
                "returns": np.array([e[1] for e in entries], dtype=np.float64),
                "thetas": torch.stack([e[2] for e in entries]) if entries else torch.zeros(0)}

    def load_state_dict(self, state: dict) -> None:
        self._load_scale_state(state)
        self.arrivals, self.buckets = int(state["arrivals"]), {}
        thetas = state["thetas"]
        for i, (a, r) in enumerate(zip(state["order"].tolist(), state["returns"].tolist(), strict=True)):
            # bypasses the capacity rule: the saved buckets already obey it
            self.buckets.setdefault(int(self.bucket_of(r)), []).append((a, r, thetas[i].clone()))


class FifoBuffer(_ReturnScale):
    """The ablation: the newest ``size`` policies, each drawn uniformly (regions weighted by count).

    n_bins: equal-width bins over scaled [0, 1] that ``bucket_of``/``filled`` report (sampling ignores them),
    so the unseen-returns report reads a FIFO run on the same grid as a bucket run.
    """

    def __init__(self, r_min: float = 0.0, r_max: float = 1.0, size: int = 800, seed: int = 0,
                 n_bins: int = 800):
        super().__init__(r_min, r_max, seed)
        if int(size) != size or size < 1:
            raise PolicygenError(f"FIFO buffer size must be an integer >= 1, got {size!r}")
        if int(n_bins) != n_bins or n_bins < 1:
            raise PolicygenError(f"FIFO bin count must be an integer >= 1, got {n_bins!r}")
        self.size, self.n_bins = int(size), int(n_bins)
        self.entries: list[tuple[int, float, torch.Tensor]] = []
        self.arrivals = 0

    def __len__(self) -> int:
        return len(self.entries)

    def bucket_of(self, returns) -> np.ndarray:
        return self._bins(returns, self.n_bins)

    def stored_returns(self) -> np.ndarray:
        return np.array([e[1] for e in self.entries], dtype=np.float64)

    def _entry_lists(self) -> list[list[tuple[int, float, torch.Tensor]]]:
        return [self.entries]

    def add(self, thetas, returns) -> np.ndarray:
        t, r = _as_batch(thetas, returns)
        for i in range(len(r)):
            self.best_return = max(self.best_return, float(r[i]))
            self.entries.append((self.arrivals, float(r[i]), t[i].clone()))
            self.arrivals += 1
        del self.entries[:max(0, len(self.entries) - self.size)]
        return np.ones(len(r), dtype=bool)

    def probabilities(self) -> list[tuple[int, float, float]]:
        return [(a, r, 1.0 / len(self.entries)) for a, r, _ in self.entries]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.entries:
            raise PolicygenError("cannot sample from an empty FIFO buffer; add policies first")
        picks = self.rng.integers(len(self.entries), size=int(n))
        chosen = [self.entries[int(j)] for j in picks]
        scaled = torch.tensor(self.scale([e[1] for e in chosen]), dtype=torch.float32)
        return scaled, torch.stack([e[2] for e in chosen])

    def rescale(self, r_max: float) -> None:
        if not (math.isfinite(r_max) and r_max > self.r_min):
            raise PolicygenError(f"new return max must be finite and > min {self.r_min}, got {r_max}")
        self.r_max = float(r_max)

    def state_dict(self) -> dict:
        return {**self._scale_state(), "arrivals": self.arrivals,
                "order": np.array([e[0] for e in self.entries], dtype=np.int64),
                "returns": np.array([e[1] for e in self.entries], dtype=np.float64),
                "thetas": torch.stack([e[2] for e in self.entries]) if self.entries else torch.zeros(0)}

    def load_state_dict(self, state: dict) -> None:
        self._load_scale_state(state)
        self.arrivals = int(state["arrivals"])
        self.entries = [(a, r, state["thetas"][i].clone()) for i, (a, r)
                        in enumerate(zip(state["order"].tolist(), state["returns"].tolist(), strict=True))]
