"""``policygen runs``: status (complete, running, stopped), env, algorithm, best and last evaluation."""

import json

from policygen.cli import main
from policygen.runs.rundir import RunDir


def _run(root, name, algo, env, evals, complete=False, keep_lock=False):
    run = RunDir.create(root / name, {"algorithm": algo, "run": {"env_id": env, "steps": 1000}})
    for i, ev in enumerate(evals):
        run.append_metrics({"env_steps": 100 * (i + 1), "wall_s": 1.5 * (i + 1), "iteration": i + 1,
                            "eval_return": ev})
    if complete:
        run.write_summary({"env_steps": 1000, "wall_s": 9.0, "final_eval_return": 50.0, "best_eval_return": 70.0})
    if not keep_lock:
        run.unlock()
    return run


def test_lists_status_env_algorithm_and_evaluations(capsys, tmp_path):
    _run(tmp_path, "a-done", "ars", "Hopper-v5", [10.0, 70.0, 50.0], complete=True)
    live = _run(tmp_path, "b-live", "gogepo", "InvertedPendulum-v5", [3.0, None, 8.0], keep_lock=True)
    _run(tmp_path / "nested", "c-killed", "udrlpg", "Swimmer-v5", [5.0, 2.0])
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "config.json").write_text('{"something": "else"}')
    try:
        code = main(["runs", str(tmp_path), "--json"])
        rows = {r["run"].split("/")[-1]: r for r in json.loads(capsys.readouterr().out)}
        assert code == 0 and set(rows) == {"a-done", "b-live", "c-killed"}
        assert rows["a-done"]["status"] == "complete" and rows["a-done"]["algorithm"] == "ars"
        assert (rows["a-done"]["best_eval"], rows["a-done"]["last_eval"]) == (70.0, 50.0)
        assert rows["b-live"]["status"] == "running" and rows["b-live"]["algorithm"] == "gogepo"
        assert (rows["b-live"]["best_eval"], rows["b-live"]["last_eval"]) == (8.0, 8.0)
        assert rows["b-live"]["env_steps"] == 300
        assert rows["c-killed"]["status"] == "stopped" and rows["c-killed"]["env_id"] == "Swimmer-v5"
        assert (rows["c-killed"]["best_eval"], rows["c-killed"]["last_eval"]) == (5.0, 2.0)
        code = main(["runs", str(tmp_path)])
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["run", "status", "algorithm", "env_id", "env_steps", "best_eval", "last_eval",
                                    "wall_s"]
        assert len(lines) == 4 and "stopped" in lines[3] and "udrlpg" in lines[3]
    finally:
        live.unlock()


def test_missing_root_is_one_clear_line(capsys, tmp_path):
    code = main(["runs", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("policygen: error: ") and "no such folder" in err and err.count("\n") == 1
