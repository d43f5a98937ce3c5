"""Command maps: isotonic fit, inversion, the file, and calibrate -> generate / sweep on a real run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from policygen.algorithms.loading import load_run
from policygen.analysis.command_map import FILE, CommandMap, isotonic
from policygen.cli import main
from policygen.errors import PolicygenError

META = dict(episodes=1, seed=0, env_steps_used=0, checkpoint_env_steps=0)


def test_isotonic_pools_violators_and_ties_into_increasing_blocks():
    assert isotonic([1, 3, 2, 4]) == [(0, 0, 1.0), (1, 2, 2.5), (3, 3, 4.0)]
    assert isotonic([1, 1, 2]) == [(0, 1, 1.0), (2, 2, 2.0)]
    y = np.random.default_rng(0).normal(size=50).cumsum()
    blocks = isotonic(y)
    fitted = np.concatenate([[v] * (j - i + 1) for i, j, v in blocks])
    assert np.all(np.diff([v for _, _, v in blocks]) > 0) and len(fitted) == len(y)
    assert fitted.mean() == pytest.approx(y.mean())  # least squares under the order keeps the mean


def test_inputs_invert_a_miscalibrated_but_monotone_generator():
    # G earns twice its input up to 500, then 1000 (a UDRLPG pendulum's shape)
    c = np.arange(0, 1001, 100.0)
    m = CommandMap.fit(c, np.minimum(2 * c, 1000), **META)
    got = m.inputs_for([-5, 0, 100, 400, 450, 900, 1000, 2000])
    assert got == pytest.approx([0, 0, 50, 200, 225, 450, 500, 500])  # the smallest input that earns it
    flat = CommandMap.fit([0, 1, 2], [5, 5, 5], **META)
    assert flat.inputs_for([0, 5, 9]) == pytest.approx([0, 0, 0])
    with pytest.raises(PolicygenError, match="increasing finite commands"):
        CommandMap.fit([0, 0], [1, 2], **META)


def test_map_file_round_trip_and_refusals(tmp_path):
    m = CommandMap.fit([0, 10, 20], [3, 1, 30], **META)
    m.save(tmp_path)
    back = CommandMap.load(tmp_path)
    assert back.inputs_for([2, 15]) == pytest.approx(m.inputs_for([2, 15]))
    assert CommandMap.load(tmp_path / "nothing-here") is None
    (tmp_path / FILE).write_text("{broken")
    with pytest.raises(PolicygenError, match="corrupt JSON"):
        CommandMap.load(tmp_path)
    (tmp_path / FILE).write_text(json.dumps({"format": "something-else", "commands": [0, 1]}))
    with pytest.raises(PolicygenError, match="not a policygen command map"):
        CommandMap.load(tmp_path)


def test_calibrate_then_generate_and_sweep_use_the_map_until_the_generator_changes(tmp_run_copy, capsys):
    run = tmp_run_copy
    assert main(["calibrate", run, "--points", "4", "--episodes", "2", "--refine", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)["commands"]) == 4
    assert main(["calibrate", run, "--points", "4", "--episodes", "2", "--refine", "1"]) == 0
    out, err = capsys.readouterr()
    fit = json.loads(out)
    assert "[calibrate] grid: 4 commands x 2 episodes" in err and "written to" in err  # progress on long work
    # one round adds the midpoints of up to 2 of the steepest neighbouring pairs
    assert fit["env_steps_used"] > 0 and 4 <= len(fit["commands"]) <= 6 and np.all(np.diff(fit["commands"]) > 0)
    loaded = load_run(run)
    lo, hi = fit["commands"][0], fit["commands"][-1]
    targets = np.linspace(lo, hi, 5)
    inputs, mapped = loaded.generator_inputs(targets)
    assert mapped and np.allclose(inputs, CommandMap.load(run).inputs_for(targets))
    assert not loaded.generator_inputs(targets, raw=True)[1]
    assert loaded.generate(targets[1]).meta["generator_input"] == pytest.approx(inputs[1])  # the Python API
    assert "generator_input" not in loaded.generate(targets[1], raw=True).meta
    assert main(["sweep", run, "--episodes", "1"]) == 0  # the default grid: the run's calibration, sweep.json
    out = json.loads(capsys.readouterr().out)
    assert out["command_map"] and len(out["generator_inputs"]) == 21
    # a grid of one's own keeps its own file: sweep.json stays the run's calibration (policygen report reads it)
    assert main(["sweep", run, "--commands", f"{lo}:{hi}:3", "--episodes", "1"]) == 0
    custom = json.loads(capsys.readouterr().out)
    assert custom["plot"].endswith("sweep-custom.png") and (Path(run) / "sweep-custom.json").exists()
    assert len(json.loads((Path(run) / "sweep.json").read_text())["commands"]) == 21
    assert main(["sweep", run, "--episodes", "1", "--raw"]) == 0
    assert not json.loads(capsys.readouterr().out)["command_map"]
    # G alone beside a map, and a sweep on another backend, keep their own files: sweep.json stays the mapped one
    assert not json.loads((Path(run) / "sweep-raw.json").read_text())["command_map"]
    assert json.loads((Path(run) / "sweep.json").read_text())["command_map"]
    assert main(["sweep", run, "--episodes", "1", "--backend", "mujoco"]) == 0
    on_mujoco = json.loads(capsys.readouterr().out)
    assert on_mujoco["plot"].endswith("sweep-on-mujoco.png") and (Path(run) / "sweep-on-mujoco.json").exists()
    assert json.loads((Path(run) / "sweep.json").read_text())["achieved_mean"] == out["achieved_mean"]
    assert main(["sweep", run, "--episodes", "1", "--backend", "gymnasium"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"].endswith("/sweep.png")  # the run's own backend, named
    # a map fitted on another checkpoint is not used, and says so
    path = Path(run) / FILE
    data = json.loads(path.read_text())
    data["checkpoint_env_steps"] += 1
    path.write_text(json.dumps(data))
    assert not load_run(run).generator_inputs(targets)[1]
    assert "was fitted at" in capsys.readouterr().err


def test_calibrate_refuses_a_run_that_is_no_generator(capsys, tiny_run):
    assert main(["calibrate", tiny_run("ars")]) == 2
    assert "not a generator" in capsys.readouterr().err


@pytest.fixture
def tmp_run_copy(tiny_run, tmp_path):
    """A copy of the session's tiny GoGePo run: calibrate writes into the run directory."""
    dst = tmp_path / "gogepo"
    shutil.copytree(tiny_run("gogepo"), dst, ignore=shutil.ignore_patterns(".lock"))
    return str(dst)
