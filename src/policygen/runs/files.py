"""Atomic writes and pickle-free state files (safetensors for tensors, JSON for the rest)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from policygen.errors import PolicygenError

STATE_FORMAT = "policygen-state"
STATE_VERSION = "1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename over it, fsync the folder.

    A crash or a full disk at any moment leaves either the old file or the new one, never a mix.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file gets the usual mode
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise write_error(path, e) from None


def write_error(path: Path, e: OSError) -> PolicygenError:
    """One line for a failed write (disk full, read-only, permissions): the file as it was is kept."""
    return PolicygenError(f"cannot write {path}: {e.strerror or e}; nothing written before is lost "
                          f"(free space or fix permissions, then resume with --resume where a run stopped)")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicygenError(f"{path}: no such file ({what} expected)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicygenError(f"{path}: not a valid {what} (corrupt JSON: {e})") from None


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor/array leaf by a reference into ``tensors``; the rest stays JSON."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"state keys must be strings at {prefix!r}")
        return {k: _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a state file")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike, state: dict, kind: str) -> None:
    """Save a nested dict of tensors, arrays and JSON values atomically as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "kind": kind, "tree": json.dumps(tree)}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_state(path: str | os.PathLike, kind: str) -> dict:
    """Load what ``save_state`` wrote; corrupt, truncated, foreign or other-kind files raise one clear error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicygenError(f"{path}: no such file ({kind} expected)") from None
    except IsADirectoryError:
        raise PolicygenError(f"{path}: is a folder, a {kind} file was expected") from None
    try:
        tensors = st_load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, OverflowError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicygenError(f"{path}: not a policygen {kind} file (corrupt or truncated: "
                             f"{str(e).splitlines()[0][:120]})") from None
    if meta.get("format") != STATE_FORMAT:
        raise PolicygenError(f"{path}: a safetensors file, but not a policygen {kind} (foreign file)")
    if meta.get("version") != STATE_VERSION:
        raise PolicygenError(f"{path}: policygen state version {meta.get('version')!r}; this policygen "
                             f"reads version {STATE_VERSION}")
    if meta.get("kind") != kind:
        raise PolicygenError(f"{path}: holds a {meta.get('kind')!r}, not a {kind}")
    try:
        return _unflatten(json.loads(meta["tree"]), tensors)
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise PolicygenError(f"{path}: corrupt policygen {kind} (bad tree: {e})") from None


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors header, read as JSON (no code runs)."""
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length beyond the end of the file")
    header = json.loads(data[8:8 + n])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return meta if isinstance(meta, dict) else {}


def optimizer_state(opt) -> dict:
    """A torch optimizer's state with string keys only (state files take no integer keys)."""
    sd = opt.state_dict()
    return {"state": {str(k): dict(v) for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


def load_optimizer_state(opt, state: dict) -> None:
    """Inverse of ``optimizer_state`` (JSON turned Adam's ``betas`` tuple into a list)."""
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in state["param_groups"]]
    opt.load_state_dict({"state": {int(k): v for k, v in state["state"].items()}, "param_groups": groups})


def check_output(path: str | os.PathLike, accepted: tuple[str, ...], force: bool, what: str = "output") -> Path:
    """An output path the house rules accept: a known extension, not an existing file unless ``force``.

    A missing folder is fine (the atomic write creates it); a folder where the file should be is refused.
    """
    path = Path(path)
    if path.suffix.lower() not in accepted:
        raise PolicygenError(f"{path}: unknown {what} extension {path.suffix!r}; use one of {list(accepted)}")
    if path.is_dir():
        raise PolicygenError(f"{path} is a folder; give a file name ending in one of {list(accepted)}")
    if path.exists() and not force:
        raise PolicygenError(f"{path} exists; pass --force to overwrite it")
    return path
