"""The chunked weight-sharing hypernetwork of GoGePo (and UDRLPG): command ``c`` -> flat policy weights.

Every weight matrix of the policy is cut into tiles. The first layer is tiled along its outputs only
(a tile is ``chunk x obs_dim``), the last layer along its inputs only (``act_dim x chunk``), hidden
layers along both (``chunk x chunk``). Each tile has a learned embedding ``z``; one hypernetwork per
layer type (input, hidden, output) maps ``[z ; c]`` to the tile's weights (weight MLP) and to the
biases of the tile's output neurons (bias MLP). Tiles that share output neurons (those along the
input dimension) each propose biases; the layer's bias is their mean.

Widths that do not divide by ``chunk`` are padded up to whole tiles and the assembled matrices are
cropped, so any architecture works (the last tile of a row or column is then partly unused).

Output scaling multiplies a layer's generated weights and biases by ``2 / sqrt(fan_in)`` so that the
policy starts with about the scale of a standard initialisation whatever its width.

Speed: the whole forward is a handful of large matmuls over ``B * tiles`` rows. The first MLP layer
is split as ``W [z ; c] = W_z z + W_c c`` so the tile part is computed once per call, not per command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec

LAYER_TYPES = ("input", "hidden", "output")


class TileMLP(nn.Module):
    """``[z ; c] -> hidden... -> out`` with ReLU; the first layer is applied in two parts (see module doc)."""

    def __init__(self, embed_dim: int, command_dim: int, hidden: Sequence[int], out: int):
        super().__init__()
        sizes = [embed_dim + command_dim, *hidden, out]
        self.embed_dim = embed_dim
        self.layers = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z (T, E), c (B, C) -> (B, T, out) for every tile under every command."""
        first = self.layers[0]
        wz, wc = first.weight[:, :self.embed_dim], first.weight[:, self.embed_dim:]
        x = (F.linear(z, wz, first.bias).unsqueeze(0) + F.linear(c, wc).unsqueeze(1))
        b, t = x.shape[:2]
        x = x.reshape(b * t, -1)
        for layer in self.layers[1:]:
            x = layer(torch.relu(x))
        return x.reshape(b, t, -1)


class _Layer:
    """How one policy layer is tiled: tile shape, tile grid, and which embeddings rows it owns."""

    def __init__(self, kind: str, out: int, inp: int, tile_out: int, tile_in: int, first_tile: int):
        self.kind, self.out, self.inp = kind, out, inp
        self.tile_out, self.tile_in = tile_out, tile_in
        self.grid_out, self.grid_in = math.ceil(out / tile_out), math.ceil(inp / tile_in)
        self.tiles = slice(first_tile, first_tile + self.grid_out * self.grid_in)


class HyperNetwork(nn.Module):
    """``forward(commands (B, command_dim)) -> thetas (B, spec.num_params)`` in flat_mlp's layout.

    spec: the policy to generate (needs biases: ``spec.bias`` True).
    command_dim: size of the command vector (1: a scalar return command).
    chunk: tile side, in neurons (GoGePo 16, UDRLPG 32).
    embed_dim: size of a tile's learned embedding ``z`` (GoGePo 8, UDRLPG 32).
    hidden: hidden widths of every weight/bias MLP (GoGePo (256, 256), UDRLPG (512, 512)).
    output_scaling: multiply each layer's output by ``2 / sqrt(fan_in)`` (GoGePo yes, UDRLPG no).
    init_std: if set, the last layer of every tile MLP is rescaled at construction so the raw tile outputs
        (before output scaling) have this standard deviation over commands in [0, 1]; None keeps PyTorch's
        default init (raw std ~0.1). With output scaling, 0.5 makes the generated weights start at
        std ~1/sqrt(fan_in), a LeCun-style initialisation.
    """

    def __init__(self, spec: MLPSpec, command_dim: int = 1, chunk: int = 16, embed_dim: int = 8,
                 hidden: Sequence[int] = (256, 256), output_scaling: bool = True,
                 init_std: float | None = None):
        super().__init__()
        for name, v in (("command_dim", command_dim), ("chunk", chunk), ("embed_dim", embed_dim)):
            if int(v) < 1:
                raise PolicygenError(f"hypernetwork {name} must be a positive integer, got {v!r}")
        if any(int(h) < 1 for h in hidden):
            raise PolicygenError(f"hypernetwork hidden widths must be positive integers, got {tuple(hidden)}")
        if not spec.bias:
            raise PolicygenError(f"the hypernetwork generates policies with biases; got bias=False for "
                                 f"{spec.describe()}")
        self.spec, self.command_dim, self.chunk = spec, int(command_dim), int(chunk)
        self.output_scaling = bool(output_scaling)
        self.plan = self._tile_plan(spec, self.chunk)
        n_tiles = self.plan[-1].tiles.stop
        # N(0, 1) like nn.Embedding: tiles start distinguishable, on the scale of a normalised input.
        self.embeddings = nn.Parameter(torch.randn(n_tiles, int(embed_dim)))
        self.weight_nets, self.bias_nets = nn.ModuleDict(), nn.ModuleDict()
        for layer in self.plan:
            if layer.kind not in self.weight_nets:
                hid = tuple(int(h) for h in hidden)
                self.weight_nets[layer.kind] = TileMLP(embed_dim, command_dim, hid,
                                                       layer.tile_out * layer.tile_in)
                self.bias_nets[layer.kind] = TileMLP(embed_dim, command_dim, hid, layer.tile_out)
        scales = [2.0 / math.sqrt(layer.inp) if self.output_scaling else 1.0 for layer in self.plan]
        self.register_buffer("_scales", torch.tensor(scales), persistent=False)
        if init_std is not None:
            if not float(init_std) > 0:
                raise PolicygenError(f"hypernetwork init_std must be > 0 or None, got {init_std!r}")
            self._rescale_init(float(init_std))

    @torch.no_grad()
    def _rescale_init(self, std: float) -> None:
        """Scale each tile MLP's last layer so its outputs have std ``std`` over commands in [0, 1]."""
        c = torch.linspace(0, 1, 5).unsqueeze(1).expand(-1, self.command_dim)
        for kind, layers in self._by_kind().items():
            idx = torch.cat([torch.arange(lay.tiles.start, lay.tiles.stop) for lay in layers])
            for net in (self.weight_nets[kind], self.bias_nets[kind]):
                out = net(self.embeddings[idx], c)
                factor = std / max(float(out.std()), 1e-12)
                net.layers[-1].weight.mul_(factor)
                net.layers[-1].bias.mul_(factor)

    @staticmethod
    def _tile_plan(spec: MLPSpec, chunk: int) -> list[_Layer]:
        shapes = spec.layer_shapes
        plan, start = [], 0
        for k, (out, inp) in enumerate(shapes):
            last, first = k == len(shapes) - 1, k == 0
            kind = "output" if last else "input" if first else "hidden"
            layer = _Layer(kind, out, inp, out if last else chunk, inp if first else chunk, start)
            plan.append(layer)
            start = layer.tiles.stop
        return plan

    @property
    def num_tiles(self) -> int:
        return self.embeddings.shape[0]

    def forward(self, commands: torch.Tensor) -> torch.Tensor:
        """commands (B, command_dim) (or (B,) when command_dim is 1) -> thetas (B, P)."""
        c = self._check(commands)
        parts = []
        for kind, layers in self._by_kind().items():
            idx = torch.cat([torch.arange(lay.tiles.start, lay.tiles.stop) for lay in layers])
            z = self.embeddings[idx]
            w_all, b_all = self.weight_nets[kind](z, c), self.bias_nets[kind](z, c)
            start = 0
            for lay in layers:
                n = lay.grid_out * lay.grid_in
                parts.append((lay, w_all[:, start:start + n], b_all[:, start:start + n]))
                start += n
        parts.sort(key=lambda p: p[0].tiles.start)
        flat = []
        for k, (lay, w, b) in enumerate(parts):
            w, b = self._assemble(lay, w, b)
            flat += [w * self._scales[k], b * self._scales[k]]
        return torch.cat(flat, dim=1)

    def _by_kind(self) -> dict[str, list[_Layer]]:
        groups: dict[str, list[_Layer]] = {}
        for lay in self.plan:
            groups.setdefault(lay.kind, []).append(lay)
        return groups

    @staticmethod
    def _assemble(lay: _Layer, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles w (B, go*gi, to*ti), b (B, go*gi, to) -> W flat (B, out*in), b (B, out), cropped."""
        bsz = w.shape[0]
        w = w.reshape(bsz, lay.grid_out, lay.grid_in, lay.tile_out, lay.tile_in)
        w = w.permute(0, 1, 3, 2, 4).reshape(bsz, lay.grid_out * lay.tile_out, lay.grid_in * lay.tile_in)
        w = w[:, :lay.out, :lay.inp].reshape(bsz, -1)
        # tiles along the input dimension each propose the same neurons' biases: average them
        b = b.reshape(bsz, lay.grid_out, lay.grid_in, lay.tile_out).mean(dim=2)
        return w, b.reshape(bsz, -1)[:, :lay.out]

    def _check(self, commands: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(commands, dtype=self.embeddings.dtype, device=self.embeddings.device)
        if c.dim() == 1 and self.command_dim == 1:
            c = c.unsqueeze(1)
        if c.dim() != 2 or c.shape[1] != self.command_dim:
            raise PolicygenError(f"commands must have shape (B, {self.command_dim}), got {tuple(c.shape)}")
        return c
