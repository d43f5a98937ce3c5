"""policygen report on a fixed set of small run directories (written here with known numbers)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from policygen.analysis.stats import iqm
from policygen.cli import main
from policygen.runs.rundir import METRIC_COLUMNS, RUN_FORMAT

FINALS = {("InvertedPendulum-v5", "gogepo"): [900.0, 1000.0, 650.0], ("InvertedPendulum-v5", "td3"): [300.0, 420.0],
          ("InvertedPendulum-v5", "udrl"): [40.0, 55.0, 20.0], ("Swimmer-v5", "ars"): [250.0, 330.0]}


def make_run(root, env, algo, seed, final, steps=5000, sweep=False):
    path = root / f"{env}-{algo}-s{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "algorithm": algo,
                                                  "run": {"env_id": env, "seed": seed, "env_kwargs": {}}}))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        for k in range(1, 6):
            w.writerow({"env_steps": k * steps // 5, "wall_s": 2.0 * k * (1 + seed), "eval_return": final * k / 5})
    (path / "summary.json").write_text(json.dumps({"algorithm": algo, "env_id": env, "final_eval_return": final,
                                                   "wall_s": 10.0 * (1 + seed), "env_steps": steps,
                                                   "commit": "abc1234"}))
    if sweep:
        (path / "sweep.json").write_text(json.dumps({"commands": [0, 500, 1000], "achieved_mean": [30, 480, 900],
                                                     "achieved_std": [5, 20, 40], "spearman": 1.0,
                                                     "mae_frac": 0.05}))
    return path


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for (env, algo), finals in FINALS.items():
        for seed, final in enumerate(finals):
            make_run(root, env, algo, seed, final, sweep=algo == "gogepo" and seed == 0)
    return root


def test_report_builds_with_every_figure_it_names(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    md = (out / "report.md").read_text()
    named = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(named) == set(printed["figures"]) and len(named) == 6  # 2 curves x 2 envs, PoI and calibration on IP
    for name in named:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "## InvertedPendulum-v5" in md and "## Swimmer-v5" in md and " cores " in md
    assert "one algorithm only" in md  # Swimmer's table has nothing to compare
    report = json.loads((out / "report.json").read_text())
    table = {r["algorithm"]: r for r in report["envs"]["InvertedPendulum-v5"]["table"]}
    for algo in ("gogepo", "td3", "udrl"):
        assert table[algo]["iqm"] == pytest.approx(iqm(FINALS[("InvertedPendulum-v5", algo)]))
        assert table[algo]["ci_low"] <= table[algo]["iqm"] <= table[algo]["ci_high"]
    assert table["gogepo"]["iqm"] == pytest.approx(850.0)  # 3 runs: trim_mean drops none, plain mean
    poi = report["envs"]["InvertedPendulum-v5"]["poi"]
    assert poi["gogepo"]["td3"][0] == 1.0 and poi["udrl"]["td3"][0] == 0.0
    assert report["envs"]["InvertedPendulum-v5"]["calibration"][0]["spearman"] == 1.0
    assert "one table per environment" in md  # two envs given: said once, never mixed
    assert "Swimmer-v5" not in json.dumps(report["envs"]["InvertedPendulum-v5"]["table"])
    # per run: evaluations are final * k / 5 for k = 1..5, so best = final and the last-20 mean (5 rows) is 0.6 final
    per_run = {(r["algorithm"], r["seed"]): r for r in report["envs"]["InvertedPendulum-v5"]["runs"]}
    assert len(per_run) == 8 and per_run[("gogepo", 2)]["best"] == 650.0 and per_run[("gogepo", 2)]["last_n"] == 5
    assert per_run[("td3", 1)]["last_mean"] == pytest.approx(0.6 * 420.0) and per_run[("td3", 1)]["spearman"] is None
    assert per_run[("gogepo", 0)]["mae_frac"] == 0.05 and "| gogepo | 0 | 900.0 | 900.0 | 540.0 (5) |" in md
    # 90% of the best IQM (850 -> 765): gogepo's runs 0 and 1 reach it at their last row, run 2 never
    assert table["gogepo"]["reached"] == 2 and table["td3"]["reached"] == 0


def test_broken_and_incomplete_runs_are_skipped_with_one_line(runs, tmp_path, capsys):
    broken = make_run(runs, "InvertedPendulum-v5", "ars", 0, 500.0)
    (broken / "metrics.csv").write_text("env_steps,wall_s,eval_return\n1000,1.0,not-a-number\n")
    nocol = make_run(runs, "InvertedPendulum-v5", "ars", 1, 500.0)
    (nocol / "metrics.csv").write_text("steps,foo\n1,2\n")
    running = make_run(runs, "InvertedPendulum-v5", "ars", 2, 500.0)
    (running / "summary.json").unlink()
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--env", "InvertedPendulum-v5"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    skipped = [line for line in err if line.startswith("policygen: skipped")]
    assert len(skipped) == 3 + 2  # the three above, and the two Swimmer runs (--env)
    assert any("not a number" in s for s in skipped) and any("lacks the column" in s for s in skipped)
    assert any("not complete" in s for s in skipped) and any("not of --env" in s for s in skipped)
    md = (out / "report.md").read_text()
    assert "## Skipped runs" in md and md.count(str(broken)) == 1 and "## Swimmer-v5" not in md
    report = json.loads((out / "report.json").read_text())
    assert "ars" not in {r["algorithm"] for r in report["envs"]["InvertedPendulum-v5"]["table"]}


def test_report_without_usable_runs_is_one_line(tmp_path, capsys):
    make_run(tmp_path / "r", "Hopper-v5", "ars", 0, float("nan"))
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("policygen: error: no usable run") and len(err.splitlines()) == 1
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_learning_curve_band_is_bounded_by_the_runs(runs):
    from policygen.analysis.report import curve
    from policygen.analysis.report_data import collect

    used, _, _ = collect([str(runs)], "InvertedPendulum-v5")
    gogepo = [r for r in used if r.algo == "gogepo"]
    grid, (mean, lo, hi) = curve(gogepo, "steps")
    assert grid[0] == 1000 and grid[-1] == 5000
    ends = np.array([r.final for r in gogepo])
    assert mean[-1] == pytest.approx(ends.mean()) and ends.min() <= lo[-1] <= hi[-1] <= ends.max()


def test_report_reads_real_runs_of_ours_and_of_a_baseline_alike(tiny_run, tmp_path, capsys):
    """A real ARS run (InvertedPendulum-v5) and a real UDRL run (the stub) in one report: two tables."""
    import shutil

    root = tmp_path / "real"
    shutil.copytree(tiny_run("ars"), root / "ars")
    assert main(["train", "udrl", "--env", "policygen-tests/Stub-v0", "--steps", "300", "--eval-every", "150",
                 "--eval-episodes", "2", "--set", "hidden=8", "--set", "n_warmup_episodes=3", "--set",
                 "n_updates_per_iter=2", "--out", str(root / "udrl"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(root), "--out", str(tmp_path / "rep")]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["runs_used"] == 2 and not report["skipped"]
    assert set(report["envs"]) == {"InvertedPendulum-v5", "policygen-tests/Stub-v0"}
    summary = json.loads((root / "udrl" / "summary.json").read_text())
    assert report["envs"]["policygen-tests/Stub-v0"]["table"][0]["iqm"] == pytest.approx(summary["final_eval_return"])


def test_a_command_blind_generator_s_undefined_spearman_does_not_break_the_report(runs, tmp_path, capsys):
    (runs / "InvertedPendulum-v5-gogepo-s1" / "sweep.json").write_text(json.dumps(
        {"commands": [0, 500, 1000], "achieved_mean": [1000, 1000, 1000], "achieved_std": [0, 0, 0],
         "spearman": None, "mae_frac": 0.5}))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    calibration = json.loads((out / "report.json").read_text())["envs"]["InvertedPendulum-v5"]["calibration"]
    assert sorted(c["spearman"] is None for c in calibration) == [False, True]


def test_a_calibration_swept_through_a_command_map_is_marked_as_such(runs, tmp_path, capsys):
    (runs / "InvertedPendulum-v5-gogepo-s1" / "sweep.json").write_text(json.dumps(
        {"commands": [0, 500, 1000], "achieved_mean": [10, 490, 990], "achieved_std": [1, 1, 1],
         "spearman": 1.0, "mae_frac": 0.01, "command_map": True}))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert md.count("(through its command map)") == 2  # the per-run table and the calibration table, seed 1 only
    calibration = json.loads((out / "report.json").read_text())["envs"]["InvertedPendulum-v5"]["calibration"]
    assert sorted(c["command_map"] for c in calibration) == [False, True]
