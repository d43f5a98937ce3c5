"""The command line as a user meets it: one-line errors that name the bad value, nothing overwritten."""

import json

import pytest
import torch

from policygen.cli import main
from policygen.policies import MLPSpec, Policy
from policygen.policies.io import load_policy, save_policy


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["train", "ars", "--env", "Hoper-v5"], "unknown environment id 'Hoper-v5'; did you mean Hopper-v5"),
    (["train", "ars", "--env", "CartPole-v1"], "Discrete action space"),
    (["train", "nope", "--env", "Hopper-v5"], "unknown algorithm 'nope'"),
    (["train", "ars", "--env", "Hopper-v5", "--set", "foo=1"], "no setting 'foo'"),
    (["train", "ars", "--env", "Hopper-v5", "--set", "top=x"], "top='x'"),
    (["train", "ars", "--env", "Hopper-v5", "--preset", "nope"], "no preset 'nope'"),
    (["train", "ars", "--env", "Hopper-v5", "--backend", "cuda"], "backend 'cuda' is not one of"),
    (["evaluate", "/nonexistent/run"], "no such run directory or policy file"),
    (["sweep", "/nonexistent/run"], "no such run directory"),
    (["train", "udrlpg", "--env", "InvertedPendulum-v5", "--set", "holdout_band=0.6,0.4"],
     "holdout_band must be empty or two fractions 0 <= lo < hi <= 1 (e.g. 0.4,0.6), got (0.6, 0.4)"),
    (["train", "udrlpg", "--env", "InvertedPendulum-v5", "--set", "holdout_band=0.4,0.6"],
     "holdout_band (0.4, 0.6) needs a fixed return range: set return_range=MIN,MAX"),
    (["train", "ars", "--env", "Hopper-v5", "--env-kwargs", "[1]"], "--env-kwargs takes a JSON object"),
    (["bench", "rollout", "--hidden", "a,b"], "--hidden takes comma-separated widths"),
    (["sweep", "/nonexistent/run", "--commands", "0:1:99999999"], "no such run directory"),
    # negative ranges and lists are values, not options (argparse alone says "expected one argument")
    (["sweep", "/nonexistent/run", "--commands", "-100:-5:3"], "no such run directory"),
    (["sweep", "/nonexistent/run", "--commands", "-10.5,-3"], "no such run directory"),
    (["generate", "/nonexistent/run", "--command", "-.5", "--out", "p.pt"], "no such run directory"),
])
def test_bad_input_is_one_clear_line(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *argv, *(["--out", str(tmp_path / "r")] if argv[0] == "train" else []))
    assert code == 2
    assert err.startswith("policygen: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_train_evaluate_and_refusals_on_a_real_run(capsys, tmp_path):
    out_dir = str(tmp_path / "ars")
    code, out, _ = run_cli(capsys, "train", "ars", "--env", "InvertedPendulum-v5", "--steps", "3000",
                           "--out", out_dir, "--quiet", "--backend", "gymnasium", "--num-envs", "16")
    assert code == 0 and json.loads(out)["env_steps"] >= 3000
    code, out, _ = run_cli(capsys, "evaluate", out_dir, "--episodes", "3")
    res = json.loads(out)
    assert code == 0 and len(res["returns"]) == 3 and res["mean"] == pytest.approx(sum(res["returns"]) / 3)
    # an existing run is not overwritten, and ARS is no generator
    code, _, err = run_cli(capsys, "train", "ars", "--env", "InvertedPendulum-v5", "--out", out_dir)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(capsys, "generate", out_dir, "--command", "10", "--out", str(tmp_path / "p.pt"))
    assert code == 2 and "not a generator" in err
    code, _, err = run_cli(capsys, "sweep", out_dir, "--unseen-report")
    assert code == 2 and "needs a return-bucketed buffer (udrlpg runs); ars has none" in err
    code, _, err = run_cli(capsys, "train", "--resume", out_dir)
    assert code == 2 and "already complete" in err


def test_policy_file_for_another_env_is_refused(capsys, tmp_path):
    spec = MLPSpec(11, 3, (8,))
    policy = Policy(spec, torch.zeros(spec.num_params), torch.zeros(11).numpy(), torch.ones(11).numpy(),
                    {"env_id": "Hopper-v5"})
    path = save_policy(policy, tmp_path / "hopper.safetensors")
    assert torch.equal(load_policy(path).theta, policy.theta)
    code, _, err = run_cli(capsys, "evaluate", str(path), "--env", "InvertedPendulum-v5")
    assert code == 2 and "observations of size 11" in err and "InvertedPendulum-v5 has obs 4" in err
    with pytest.raises(Exception, match="exists"):
        save_policy(policy, path)


def test_demo_trains_commands_tables_and_plots(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--algo", "gogepo", "--steps", "1500", "--n-commands", "3",
                             "--episodes", "2", "--out", str(out_dir))
    assert code == 0, err
    assert "commanded vs achieved return" in out
    table_rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() or line.strip()[:1] == "-"]
    assert len(table_rows) >= 3
    assert (out_dir / "sweep.png").stat().st_size > 1000
    result = json.loads((out_dir / "sweep.json").read_text())
    assert len(result["commands"]) == 3 and len(result["evaluator_prediction"]) == 3
    assert "V(G(c))" in out
    # the second table: the same commands through the command map fitted after training
    assert "through its command map" in out and (out_dir / "command_map.json").exists()
    mapped = json.loads((out_dir / "sweep-mapped.json").read_text())
    assert mapped["command_map"] and mapped["commands"] == result["commands"] and not result["command_map"]
    assert (out_dir / "sweep-mapped.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, words", [
    (["train", "ars", "--env", "Hopper-v5", "--steps", "-5"], "--steps: expected an integer in [1, inf], got -5"),
    (["train", "ars", "--env", "Hopper-v5", "--seed", "-1"], "--seed: expected an integer in [0, 4294967295]"),
    (["train", "ars", "--env", "Hopper-v5", "--step-timeout", "inf"], "--step-timeout: expected a finite number"),
    (["evaluate", "x", "--episodes", "0"], "--episodes: expected an integer in [1, inf], got 0"),
    (["generate", "x", "--command", "nan", "--out", "p.pt"], "--command: expected a finite number, got nan"),
    (["bench", "rollout", "--seconds", "0"], "--seconds: expected a finite number > 0, got 0"),
])
def test_bad_numbers_are_usage_errors_naming_the_flag(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_run_config_refuses_values_that_make_no_sense():
    from policygen.algorithms.base import RunConfig
    from policygen.errors import PolicygenError

    for bad in ({"steps": 0}, {"num_envs": 10**6}, {"seed": -1}, {"step_timeout": float("nan")},
                {"max_failures": -1}, {"eval_episodes": 1.5}, {"env_kwargs": [1]}, {"env_threads": -1}):
        with pytest.raises(PolicygenError, match=next(iter(bad))):
            RunConfig(env_id="Hopper-v5", **bad)


def test_env_threads_reach_the_envpool_of_the_run():
    from types import SimpleNamespace

    from policygen.algorithms.base import RunConfig
    from policygen.algorithms.trainer import _engine
    from policygen.policies.flat_mlp import MLPSpec

    algo = SimpleNamespace(spec=MLPSpec(11, 3, ()), return_convention="standard")
    for threads, expected in ((1, 1), (0, 2)):  # 0: EnvPool's default, min(num_envs, 2)
        engine = _engine(RunConfig(env_id="Hopper-v5", backend="envpool", env_threads=threads), algo, 4)
        try:
            assert engine._backend.pool.config["num_threads"] == expected
        finally:
            engine.close()


@pytest.mark.parametrize("kwargs, message", [
    ('{"no_such_option": 1}', "cannot make 'Hopper-v5' with {'no_such_option': 1}"),  # Gymnasium refuses
    ('{"healthy_z_range": [0.7, 100.0]}', "EnvPool cannot make 'Hopper-v5'"),  # only Gymnasium's option
])
def test_a_run_refused_while_its_environments_are_built_leaves_nothing(capsys, tmp_path, kwargs, message):
    out_dir = tmp_path / "r"
    code, _, err = run_cli(capsys, "train", "ars", "--env", "Hopper-v5", "--backend", "envpool",
                           "--env-kwargs", kwargs, "--out", str(out_dir), "--quiet")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out_dir.exists()


def test_sigterm_stops_a_run_at_the_end_of_its_iteration_with_a_checkpoint_and_it_resumes_there(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = str(tmp_path / "ars")
    # no regular checkpoint before the end: only the stop's own checkpoint can keep the rows written before it
    train = [sys.executable, "-m", "policygen", "train", "ars", "--env", "InvertedPendulum-v5", "--steps", "6000",
             "--out", run, "--quiet", "--backend", "gymnasium", "--num-envs", "8", "--checkpoint-every", "100000",
             "--set", "n_directions=2", "--set", "top=2"]
    proc = subprocess.Popen(train, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(run, "metrics.csv")
    while proc.poll() is None and not (os.path.exists(metrics) and open(metrics).read().count("\n") >= 2):
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1]  # still training: 6000 steps take many iterations
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "--resume" in err, err
    assert "checkpoint saved at iteration" in err, err
    assert not os.path.exists(os.path.join(run, "summary.json"))
    assert json.load(open(os.path.join(run, "status.json"))) == {"status": "stopped", "reason": "SIGTERM"}
    before = open(metrics).read().splitlines()
    done = subprocess.run([sys.executable, "-m", "policygen", "train", "--resume", run, "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.load(open(os.path.join(run, "summary.json")))["env_steps"] >= 6000
    after = open(metrics).read().splitlines()
    assert len(after) > len(before) >= 2 and after[: len(before)] == before  # every row, wall_s included, kept


def test_a_second_signal_stops_at_once_and_the_handlers_are_restored(default_sigint):
    import os
    import signal

    import pytest

    from policygen.algorithms.trainer import _StopRequest

    stop = _StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first only asks
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_version_prints_the_package_version(capsys):
    from policygen import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"policygen {__version__}"
