import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from policygen.errors import PolicygenError
from policygen.runs import files
from policygen.runs.files import atomic_write_bytes, load_state, save_state
from policygen.runs.rundir import RunDir


def test_state_round_trip_keeps_tensors_arrays_rng_and_json(tmp_path):
    rng = np.random.default_rng(5)
    gen = torch.Generator().manual_seed(3)
    state = {"w": torch.randn(3, 2), "a": np.arange(5, dtype=np.int64), "nested": {"x": [1, 2.5, None, "s"]},
             "rng": rng.bit_generator.state, "gen": gen.get_state(), "big": 2**70}
    save_state(tmp_path / "s.safetensors", state, kind="checkpoint")
    back = load_state(tmp_path / "s.safetensors", kind="checkpoint")
    assert torch.equal(back["w"], state["w"]) and np.array_equal(back["a"], state["a"])
    assert back["nested"] == state["nested"] and back["big"] == 2**70
    r2 = np.random.default_rng()
    r2.bit_generator.state = back["rng"]
    assert r2.random() == rng.random()
    g2 = torch.Generator()
    g2.set_state(back["gen"])
    assert torch.equal(torch.rand(3, generator=g2), torch.rand(3, generator=gen))


def test_non_serialisable_objects_are_refused(tmp_path):
    with pytest.raises(TypeError):
        save_state(tmp_path / "s.safetensors", {"f": object()}, kind="checkpoint")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header"])
def test_corrupt_files_give_one_clear_error(tmp_path, damage):
    p = tmp_path / "s.safetensors"
    save_state(p, {"w": torch.randn(10)}, kind="checkpoint")
    data = p.read_bytes()
    p.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(200), "empty": b"",
                   "header": (10**12).to_bytes(8, "little") + data[8:]}[damage])
    with pytest.raises(PolicygenError, match="not a policygen checkpoint"):
        load_state(p, kind="checkpoint")


def test_foreign_and_other_kind_files_are_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(PolicygenError, match="foreign"):
        load_state(tmp_path / "foreign.safetensors", kind="checkpoint")
    save_state(tmp_path / "d.safetensors", {"w": torch.zeros(2)}, kind="dataset")
    with pytest.raises(PolicygenError, match="not a checkpoint"):
        load_state(tmp_path / "d.safetensors", kind="checkpoint")
    with pytest.raises(PolicygenError, match="no such file"):
        load_state(tmp_path / "missing.safetensors", kind="checkpoint")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(PolicygenError, match=r"cannot write .*f\.bin: No space left on device; nothing written"):
        atomic_write_bytes(p, b"new" * 1000)
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.bin"]  # no temporary left behind


def test_run_directory_lock_and_refusals(tmp_path):
    run = RunDir.create(tmp_path / "r", {"algorithm": "ars"})
    with pytest.raises(PolicygenError, match="in use"):
        RunDir.open(tmp_path / "r", lock=True)
    run.unlock()
    with pytest.raises(PolicygenError, match="already exists"):
        RunDir.create(tmp_path / "r", {"algorithm": "ars"})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(PolicygenError, match="format"):
        RunDir.open(tmp_path / "other")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(PolicygenError, match="corrupt JSON"):
        RunDir.open(tmp_path / "bad")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    atomic_write_bytes(tmp_path / "policy.bin", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "policy.bin").stat().st_mode & 0o777 == 0o666 & ~mask
