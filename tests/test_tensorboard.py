"""``train --tensorboard``: event files beside metrics.csv with the same rows, x-axis env steps."""

import csv
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from policygen.cli import main


def test_tensorboard_events_match_metrics_csv(capsys, tmp_path, stub_id):
    out = tmp_path / "run"
    code = main(["train", "ars", "--env", stub_id, "--steps", "600", "--backend", "gymnasium", "--num-envs", "4",
                 "--eval-every", "200", "--eval-episodes", "2", "--out", str(out), "--quiet", "--tensorboard"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["run"]["tensorboard"] is True
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    train = acc.Scalars("train_return_mean")
    assert [e.step for e in train] == [int(r["env_steps"]) for r in rows]
    assert [e.value for e in train] == pytest.approx([float(r["train_return_mean"]) for r in rows], rel=1e-5)
    evals = acc.Scalars("eval_return")
    assert [e.step for e in evals] == [int(r["env_steps"]) for r in rows if r["eval_return"]]
    assert "wall_s" in acc.Tags()["scalars"]


def test_no_tensorboard_folder_without_the_flag(capsys, tmp_path, stub_id):
    out = tmp_path / "run"
    assert main(["train", "ars", "--env", stub_id, "--steps", "200", "--backend", "gymnasium", "--num-envs", "4",
                 "--out", str(out), "--quiet"]) == 0
    assert not (out / "tensorboard").exists()
