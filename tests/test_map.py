"""``policygen map``: a PNG from a tiny run; the PCA coordinates are deterministic for a seed."""

import json

import numpy as np
import pytest

from policygen.algorithms.loading import load_run
from policygen.analysis.policy_map import pca, policy_map
from policygen.cli import main


@pytest.mark.parametrize("algo", ["gogepo", "udrlpg"])
def test_map_writes_a_png_and_is_deterministic(capsys, tmp_path, tiny_run, algo):
    run = tiny_run(algo)
    out = tmp_path / "new" / "map.png"
    code = main(["map", run, "--out", str(out), "--n-commands", "5", "--max-points", "50", "--n-probe", "30"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    (panel,) = res["panels"]
    assert len(panel["commands"]) == 5 and 0 < panel["n_policies"] <= 50 and "snapshots" in res["note"]
    assert ("evaluator" in res["probes"]) == (algo == "gogepo")
    a, b = (policy_map(load_run(run), 5, 50, 30, seed=3)["panels"][0] for _ in range(2))
    assert a["coords"] == b["coords"] and a["command_coords"] == b["command_coords"]
    assert np.asarray(a["coords"]).shape == (a["n_policies"], 2)
    code = main(["map", run, "--out", str(out)])
    assert code == 2 and "exists; pass --force" in capsys.readouterr().err
    code = main(["map", run, "--out", str(tmp_path / "map.jpg")])
    assert code == 2 and "use one of ['.png']" in capsys.readouterr().err


def test_pca_matches_a_known_projection_and_fixes_signs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 1.0, 0.1, 0.1])
    coords, mean, basis, share = pca(x)
    assert np.allclose(np.abs(basis[0]), [1, 0, 0, 0, 0], atol=0.05) and share[0] > share[1] > 0
    flipped, *_ = pca(-x)  # a mirrored cloud gets the same axes (largest loading positive): mirrored coordinates
    assert np.allclose(flipped, -coords)
    assert np.allclose(coords, (x - x.mean(0)) @ basis.T)


def test_map_refuses_a_run_without_a_buffer(capsys, tmp_path, tiny_run):
    code = main(["map", tiny_run("ars"), "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code == 2 and "ars keeps no buffer of policies to map" in err and err.count("\n") == 1


def test_snapshots_along_training_give_one_panel_each(capsys, tmp_path):
    run = tmp_path / "snap"
    code = main(["train", "udrlpg", "--env", "InvertedPendulum-v5", "--steps", "1500", "--backend", "gymnasium",
                 "--num-envs", "8", "--eval-every", "1500", "--eval-episodes", "1", "--snapshots", "2", "--quiet",
                 "--out", str(run), "--set", "policy_hidden=8", "--set", "generator_hidden=16,16",
                 "--set", "update_repeats=4", "--set", "rollout_steps=200"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    snaps = sorted(p.name for p in (run / "checkpoints").glob("snapshot-*.safetensors"))
    assert len(snaps) == 2
    out = tmp_path / "map.png"
    assert main(["map", str(run), "--out", str(out), "--snapshots", "5", "--n-commands", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [p["checkpoint"] for p in res["panels"]] == [*snaps, "latest"] and "note" not in res
    steps = [p["env_steps"] for p in res["panels"]]
    assert steps == sorted(steps) and len(set(steps)) == 3 and out.stat().st_size > 5000
    # the same snapshots swept: the generator as it was, beside (not over) the latest sweep
    assert main(["sweep", str(run), "--snapshot", snaps[0], "--commands", "0,500", "--episodes", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["checkpoint"] == snaps[0] and res["env_steps"] == steps[0]
    stem = snaps[0].removesuffix(".safetensors")
    assert json.loads((run / f"sweep-{stem}.json").read_text())["env_steps"] == steps[0]
    assert (run / f"sweep-{stem}.png").exists() and not (run / "sweep.json").exists()
    assert main(["sweep", str(run), "--snapshot", "snapshot-9.safetensors"]) == 2
    err = capsys.readouterr().err
    assert "no snapshot 'snapshot-9.safetensors'; this run keeps: " + ", ".join(snaps) in err
