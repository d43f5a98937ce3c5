"""Exported policies: one file that maps a raw observation to an action, loadable without policygen.

``.pt`` is a TorchScript module (needs only torch: ``torch.jit.load(f)(obs)``), ``.onnx`` an ONNX graph (needs
only onnxruntime). Both hold the observation normalisation and the action scaling, take ``obs (N, obs_dim)``
and give ``action (N, act_dim)`` float32, and carry the same metadata: TorchScript in the extra file
``policygen.json``, ONNX as ``metadata_props`` (keys below, values strings, JSON where not plain text).
TorchScript takes any float dtype and normalises in float64 exactly as policygen's ``Policy`` does (same
actions bit for bit, so the same trajectories); ONNX takes float32 (``obs`` input) and runs in float32:
its actions differ from policygen's by ~1e-7, which chaotic contact dynamics can grow into another
trajectory over a long episode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import policygen
from policygen.errors import PolicygenError
from policygen.policies.flat_mlp import MLPSpec, unflatten
from policygen.policies.standalone import Policy
from policygen.runs.files import atomic_write_bytes

EXPORT_FORMAT = "policygen-exported-policy"
EXPORT_SUFFIXES = (".pt", ".onnx")
TORCHSCRIPT_EXTRA = "policygen.json"
ONNX_OPSET = 17


def export_metadata(policy: Policy) -> dict:
    """What every exported file says of itself: env id, command, policy spec, version, expected return."""
    meta = dict(policy.meta)
    return {"format": EXPORT_FORMAT, "policygen_version": policygen.__version__,
            "env_id": meta.pop("env_id", None), "command": meta.pop("command", None),
            "expected_return": meta.pop("expected_return", None), "spec": policy.spec.to_dict(),
            "obs_dim": policy.spec.obs_dim, "act_dim": policy.spec.act_dim, **meta}


def save_torchscript(policy: Policy, path: Path) -> None:
    import io

    module = torch.jit.script(policy.to_module())
    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(export_metadata(policy))})
    atomic_write_bytes(path, buf.getvalue())


def onnx_model(policy: Policy):
    """The policy as an ``onnx.ModelProto``: Sub/Div (normalise), Gemm + activation per layer, output map."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise PolicygenError("writing .onnx needs the onnx package: pip install 'policygen[export]'") from None
    spec = policy.spec
    inits = [numpy_helper.from_array(policy.obs_mean.astype(np.float32), "obs_mean"),
             numpy_helper.from_array(policy.obs_std.astype(np.float32), "obs_std")]
    nodes = [helper.make_node("Sub", ["obs", "obs_mean"], ["centred"]),
             helper.make_node("Div", ["centred", "obs_std"], ["x0"])]
    layers = unflatten(spec, policy.theta.detach().float().unsqueeze(0))
    act_op = {"tanh": "Tanh", "relu": "Relu"}[spec.activation]
    x = "x0"
    for k, (w, b) in enumerate(layers):
        inits.append(numpy_helper.from_array(w[0].numpy().copy(), f"W{k}"))
        ins = [x, f"W{k}"]
        if b is not None:
            inits.append(numpy_helper.from_array(b[0].numpy().copy(), f"b{k}"))
            ins.append(f"b{k}")
        nodes.append(helper.make_node("Gemm", ins, [f"z{k}"], transB=1))
        x = f"z{k}"
        if k < len(layers) - 1:
            nodes.append(helper.make_node(act_op, [x], [f"h{k}"]))
            x = f"h{k}"
    nodes += _onnx_output(spec, x, inits, numpy_helper)
    graph = helper.make_graph(nodes, "policygen_policy", [_io("obs", spec.obs_dim, helper, TensorProto)],
                              [_io("action", spec.act_dim, helper, TensorProto)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="policygen", producer_version=policygen.__version__)
    model.ir_version = 8  # readable by every onnxruntime that runs opset 17
    meta = export_metadata(policy)
    helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    onnx.checker.check_model(model)
    return model


def _io(name: str, dim: int, helper, tensor_proto):
    return helper.make_tensor_value_info(name, tensor_proto.FLOAT, ["batch", dim])


def _onnx_output(spec: MLPSpec, x: str, inits: list, numpy_helper) -> list:
    from onnx import helper

    high = spec.high_tensor().numpy().astype(np.float32)
    if spec.output == "tanh":
        inits.append(numpy_helper.from_array(high, "action_high"))
        return [helper.make_node("Tanh", [x], ["squashed"]), helper.make_node("Mul", ["squashed", "action_high"],
                                                                              ["action"])]
    if spec.output == "clip":
        inits += [numpy_helper.from_array(high, "action_high"), numpy_helper.from_array(-high, "action_low")]
        return [helper.make_node("Min", [x, "action_high"], ["upper"]),
                helper.make_node("Max", ["upper", "action_low"], ["action"])]
    return [helper.make_node("Identity", [x], ["action"])]


def save_onnx(policy: Policy, path: Path) -> None:
    atomic_write_bytes(path, onnx_model(policy).SerializeToString())


class ExportedPolicy:
    """An exported file run by its own runtime (torch or onnxruntime): ``policy(obs) -> action`` on raw obs."""

    def __init__(self, path: Path, meta: dict, run, runtime: str):
        self.path, self.meta, self._run, self.runtime = path, meta, run, runtime
        self.spec = MLPSpec.from_dict(meta["spec"])
        self.input_dtype = np.float64 if runtime == "torchscript" else np.float32
        """TorchScript takes the observation as Gymnasium gives it (float64); ONNX's input is float32."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=self.input_dtype)
        single = x.ndim == 1
        a = self._run(np.ascontiguousarray(x.reshape(-1, self.spec.obs_dim)))
        return a[0] if single else a


def load_exported(path: str | Path) -> ExportedPolicy:
    """Open a ``.pt`` or ``.onnx`` file that policygen exported; foreign or corrupt files give one clear error."""
    path = Path(path)
    if not path.is_file():
        raise PolicygenError(f"{path}: no such policy file")
    if path.suffix == ".pt":
        return _load_torchscript(path)
    if path.suffix == ".onnx":
        return _load_onnx(path)
    raise PolicygenError(f"{path}: exported policies are {list(EXPORT_SUFFIXES)}, got {path.suffix!r}")


def _check_meta(path: Path, meta: dict) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or "spec" not in meta:
        raise PolicygenError(f"{path}: not a policy file exported by policygen (no policygen metadata)")
    return meta


def _load_torchscript(path: Path) -> ExportedPolicy:
    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[TORCHSCRIPT_EXTRA] or "{}")
    except (RuntimeError, ValueError, json.JSONDecodeError) as e:
        raise PolicygenError(f"{path}: not a TorchScript policy file ({str(e).splitlines()[0][:120]})") from None
    meta = _check_meta(path, meta)
    module.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return ExportedPolicy(path, meta, run, "torchscript")


def _load_onnx(path: Path) -> ExportedPolicy:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PolicygenError("running .onnx needs onnxruntime: pip install 'policygen[export]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # a policy step is tiny; threads cost more than they give
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt graphs
        raise PolicygenError(f"{path}: not an ONNX policy file ({str(e).splitlines()[0][:120]})") from None
    props = sess.get_modelmeta().custom_metadata_map
    meta = {}
    for k, v in props.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    meta = _check_meta(path, meta)
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return ExportedPolicy(path, meta, run, "onnxruntime")
