"""Exported policies (.pt TorchScript, .onnx): same actions as policygen's forward, metadata, refusals."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import policygen
from policygen.analysis.evaluate import evaluate_exported
from policygen.analysis.play import play
from policygen.cli import main
from policygen.errors import PolicygenError
from policygen.policies import MLPSpec, Policy, init_thetas
from policygen.policies.export import load_exported
from policygen.policies.io import save_policy

SPECS = [
    MLPSpec(4, 1, (), "tanh", "clip", (3.0,)),              # ARS: linear, clipped
    MLPSpec(4, 1, (8,), "relu", "tanh", (3.0,)),
    MLPSpec(11, 3, (16, 16), "tanh", "tanh", (1.0, 0.5, 2.0)),  # GoGePo-like on Hopper's sizes
    MLPSpec(5, 2, (7,), "tanh", "none", (), bias=False),
]


def _policy(spec: MLPSpec, seed: int = 0) -> Policy:
    g = torch.Generator().manual_seed(seed)
    theta = init_thetas(spec, 1, g)[0] * 3
    rng = np.random.default_rng(seed)
    return Policy(spec, theta, rng.normal(size=spec.obs_dim), rng.uniform(0.5, 2.0, spec.obs_dim),
                  {"env_id": "InvertedPendulum-v5", "command": 123.5, "expected_return": 120.0, "algorithm": "x"})


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_round_trip_gives_policygen_actions_and_metadata(tmp_path, spec, suffix):
    policy = _policy(spec)
    path = save_policy(policy, tmp_path / "new" / "folder" / f"p{suffix}")  # missing folders are created
    obs = np.random.default_rng(1).normal(scale=3.0, size=(64, spec.obs_dim))
    ours = policy(obs)
    exported = load_exported(path)
    assert np.abs(exported(obs) - ours).max() <= 1e-5
    assert np.abs(exported(obs[0]) - ours[0]).max() <= 1e-5  # a single observation too
    m = exported.meta
    assert (m["env_id"], m["command"], m["expected_return"]) == ("InvertedPendulum-v5", 123.5, 120.0)
    assert MLPSpec.from_dict(m["spec"]) == spec and m["policygen_version"] == policygen.__version__


def test_files_load_with_only_their_runtime(tmp_path):
    """What a user without policygen writes: torch.jit.load, or an onnxruntime session."""
    spec = SPECS[2]
    policy = _policy(spec)
    obs = np.random.default_rng(2).normal(size=(5, spec.obs_dim)).astype(np.float32)
    save_policy(policy, tmp_path / "p.pt")
    save_policy(policy, tmp_path / "p.onnx")
    extra = {"policygen.json": ""}
    module = torch.jit.load(str(tmp_path / "p.pt"), _extra_files=extra)
    assert np.abs(module(torch.from_numpy(obs)).detach().numpy() - policy(obs)).max() <= 1e-5
    assert json.loads(extra["policygen.json"])["env_id"] == "InvertedPendulum-v5"
    sess = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(["action"], {"obs": obs})[0] - policy(obs)).max() <= 1e-5
    props = sess.get_modelmeta().custom_metadata_map
    assert props["env_id"] == "InvertedPendulum-v5" and json.loads(props["command"]) == 123.5


def test_same_returns_as_policygen_forward_on_the_same_seed(tmp_path):
    policy = _policy(SPECS[1])
    ours = play(policy, "InvertedPendulum-v5", 3, seed=5).returns
    for suffix in (".pt", ".onnx"):
        exported = load_exported(save_policy(policy, tmp_path / f"p{suffix}"))
        res = evaluate_exported(exported, "InvertedPendulum-v5", 3, seed=5)
        if suffix == ".pt":  # float64 normalisation and torch's kernels: the same trajectories bit for bit
            assert res["returns"] == ours and res["runtime"] == "torchscript"
        else:  # float32 throughout: the same episodes up to rounding
            assert res["returns"] == pytest.approx(ours, rel=1e-4) and res["runtime"] == "onnxruntime"


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_evaluate_refuses_a_file_for_another_env(capsys, tmp_path, suffix):
    path = save_policy(_policy(SPECS[2]), tmp_path / f"hopper{suffix}")
    code, _, err = _cli(capsys, "evaluate", str(path), "--env", "InvertedPendulum-v5")
    assert code == 2 and err.startswith("policygen: error: ") and err.count("\n") == 1
    assert "observations of size 11" in err and "InvertedPendulum-v5 has obs 4" in err


def test_bad_files_and_paths_are_one_clear_line(capsys, tmp_path):
    policy = _policy(SPECS[1])
    with pytest.raises(PolicygenError, match=r"unknown policy file extension '\.tflite'.*'\.onnx'"):
        save_policy(policy, tmp_path / "p.tflite")
    path = save_policy(policy, tmp_path / "p.onnx")
    before = path.read_bytes()
    with pytest.raises(PolicygenError, match="exists; pass --force"):
        save_policy(_policy(SPECS[1], seed=3), path)
    assert path.read_bytes() == before
    save_policy(_policy(SPECS[1], seed=3), path, force=True)
    assert path.read_bytes() != before
    for name, data in (("bad.onnx", b"not a graph"), ("bad.pt", b"PK nothing")):
        (tmp_path / name).write_bytes(data)
        code, _, err = _cli(capsys, "evaluate", str(tmp_path / name), "--env", "InvertedPendulum-v5")
        assert code == 2 and "not a" in err and err.count("\n") == 1 and "Traceback" not in err
    foreign = torch.jit.script(torch.nn.Linear(4, 1))
    torch.jit.save(foreign, str(tmp_path / "foreign.pt"))
    with pytest.raises(PolicygenError, match="not a policy file exported by policygen"):
        load_exported(tmp_path / "foreign.pt")


def test_generate_exports_an_ars_run_and_a_generator_run(capsys, tmp_path, tiny_run):
    runs = {algo: Path(tiny_run(algo)) for algo in ("ars", "udrlpg")}
    code, out, err = _cli(capsys, "generate", str(runs["ars"]), "--out", str(tmp_path / "ars.onnx"))
    assert code == 0, err
    meta = load_exported(tmp_path / "ars.onnx").meta
    summary = json.loads((runs["ars"] / "summary.json").read_text())
    assert meta["algorithm"] == "ars" and meta["expected_return"] == summary["final_eval_return"]
    code, out, err = _cli(capsys, "generate", str(runs["udrlpg"]), "--command", "7",
                          "--out", str(tmp_path / "u.pt"))
    assert code == 0, err
    assert load_exported(tmp_path / "u.pt").meta["command"] == 7.0
    code, out, err = _cli(capsys, "evaluate", str(tmp_path / "u.pt"), "--episodes", "2")
    assert code == 0 and json.loads(out)["runtime"] == "torchscript" and len(json.loads(out)["returns"]) == 2
