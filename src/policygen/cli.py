"""``policygen`` command line: parse, call the library, print. Errors are one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path

from policygen.errors import PolicygenError, Terminated, raise_terminated


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise PolicygenError(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _json_arg(flag: str, text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise PolicygenError(f"{flag} takes a JSON object, e.g. '{{\"reset_noise_scale\": 0}}'; got {text!r} "
                             f"({e})") from None
    if not isinstance(value, dict):
        raise PolicygenError(f"{flag} takes a JSON object, got {text!r}")
    return value


def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high if high else 'inf'}], got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def _finite(positive: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or (positive and v <= 0):
            raise argparse.ArgumentTypeError(f"expected a finite number{' > 0' if positive else ''}, got {text}")
        return v
    parse.__name__ = "number"
    return parse


COUNT, NONNEG, SEED = _int_at_least(1), _int_at_least(0), _int_at_least(0, 2**32 - 1)
ENVS = _int_at_least(1, 65536)


def cmd_train(a: argparse.Namespace) -> int:
    from policygen import cli_make_an_agent as maa
    from policygen.algorithms.base import RunConfig
    from policygen.algorithms.trainer import resume_run, start_run

    if a.algo == "make-an-agent" or maa.is_make_an_agent_run(a.resume):
        return maa.cmd_train_make_an_agent(a)
    progress = False if a.quiet else None
    if a.resume:
        run = resume_run(a.resume, progress=progress, quiet=a.quiet)
    else:
        if not a.algo or not a.env:
            raise PolicygenError("train needs ALGO and --env ENV_ID (or --resume RUN_DIR)")
        rc = RunConfig(env_id=a.env, steps=a.steps, seed=a.seed, backend=a.backend, num_envs=a.num_envs,
                       eval_every=a.eval_every or max(1000, a.steps // 20), eval_episodes=a.eval_episodes,
                       checkpoint_every=a.checkpoint_every, env_kwargs=_json_arg("--env-kwargs", a.env_kwargs),
                       torch_threads=a.torch_threads, env_threads=a.env_threads, max_failures=a.max_failures,
                       step_timeout=a.step_timeout, tensorboard=a.tensorboard, snapshots=a.snapshots,
                       ray_address=a.ray_address, ray_workers=a.ray_workers)
        if a.backend == "ray":  # before the run directory exists: a bad address leaves nothing behind
            from policygen.rollout.ray_engine import check_address

            check_address(a.ray_address)
        out = a.out or os.path.join("runs", f"{a.algo}-{a.env}-s{a.seed}")
        run = start_run(a.algo, rc, out, preset=a.preset, overrides=_kv(a.set), force=a.force,
                        progress=progress, quiet=a.quiet)
    print(json.dumps({"run_dir": str(run.path), **run.summary}, indent=2))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from policygen.analysis.evaluate import evaluate_exported, evaluate_policies, load_policy_file

    target = Path(a.target)
    if not target.exists():
        raise PolicygenError(f"{target}: no such run directory or policy file")
    if target.is_dir():
        from policygen.algorithms.loading import load_run

        loaded = load_run(str(target))
        policy = loaded.policy(a.command)
        env_id = a.env or loaded.run_config.env_id
    else:
        policy = load_policy_file(target)
        env_id = a.env or policy.meta.get("env_id")
        if not env_id:
            raise PolicygenError(f"{target} does not name its environment; pass --env ENV_ID")
    if hasattr(policy, "runtime"):  # an exported file, run by torch or onnxruntime
        result = evaluate_exported(policy, env_id, a.episodes, a.seed)
    else:
        result = evaluate_policies([policy], env_id, a.episodes, a.seed, a.backend)[0]
    print(json.dumps({"target": str(target), "command": policy.meta.get("command"), **result}, indent=2))
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from policygen import cli_make_an_agent as maa
    from policygen.algorithms.loading import load_run
    from policygen.analysis.sweep import outside_note, seen_range
    from policygen.policies.io import save_policy

    if a.prompt is not None or maa.is_make_an_agent_run(a.run_dir):
        return maa.cmd_generate_prompted(a)
    loaded = load_run(a.run_dir)
    policy = loaded.policy(a.command, raw=a.raw)
    path = save_policy(policy, a.out, force=a.force)
    out = {"out": str(path), "command": policy.meta.get("command"), **({"generator_input": policy.meta[
        "generator_input"]} if "generator_input" in policy.meta else {}), "env_id": loaded.run_config.env_id,
           "policy": policy.spec.describe(), "expected_return": policy.meta.get("expected_return")}
    note = None
    if a.command is not None:
        seen = seen_range(loaded)
        note = outside_note(__import__("numpy").array([a.command]), seen)
        out.update(seen_range=list(seen), outside_seen_range=bool(note))
    print(json.dumps(out, indent=2))
    if note:
        print(f"policygen: note: command {a.command} lies outside the returns seen in training "
              f"[{seen[0]:.1f}, {seen[1]:.1f}]; the generator extrapolates", file=sys.stderr)
    return 0


def _simulator(backend: str, loaded) -> str:
    """Who steps the run's env under ``backend`` (auto resolved); ray and the like stay as named."""
    from policygen.rollout.backends import BACKENDS, resolve_backend

    return resolve_backend(backend, loaded.run_config.env_id) if backend in BACKENDS else backend


def cmd_sweep(a: argparse.Namespace) -> int:
    from policygen.algorithms.loading import load_run
    from policygen.analysis.command_map import FILE as MAP_FILE
    from policygen.analysis.sweep import parse_commands, plot_sweep, seen_range, sweep, table
    from policygen.runs.files import atomic_write_json

    loaded = load_run(a.run_dir, a.snapshot)
    if a.unseen_report:
        from policygen.analysis.unseen import default_commands, unseen_report, unseen_table

        commands = parse_commands(a.commands, seen_range(loaded)) if a.commands else default_commands(loaded)
        result = unseen_report(loaded, commands, a.episodes, a.seed, a.backend)
    else:
        result = sweep(loaded, parse_commands(a.commands, seen_range(loaded)), a.episodes, a.seed, a.backend,
                       raw=a.raw)
    # a sweep of a snapshot, on another backend than the run's, or of G alone beside a command map gets files
    # named after that, beside the default sweep's, so neither overwrites the other
    name = ("unseen" if a.unseen_report else "sweep") + (f"-{Path(a.snapshot).stem}" if a.snapshot else "")
    if a.backend and _simulator(a.backend, loaded) != _simulator(loaded.run_config.backend, loaded):
        name += f"-on-{a.backend}"
    if a.raw and (Path(a.run_dir) / MAP_FILE).exists():
        name += "-raw"
    if name == "sweep" and a.commands:  # sweep.json stays the run's calibration (21 commands), read by report
        name = "sweep-custom"
    plot = a.plot or str(Path(a.run_dir) / f"{name}.png")
    plot_sweep(result, plot)
    result["checkpoint"], result["env_steps"] = a.snapshot or "latest", loaded.env_steps
    result["plot"] = plot
    # beside the run, so `policygen report` finds the calibration without a shell redirect
    atomic_write_json(Path(a.run_dir) / f"{name}.json", result)
    print(json.dumps(result, indent=2))
    print(unseen_table(result) if a.unseen_report else table(result), file=sys.stderr)
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from policygen.algorithms.loading import load_run
    from policygen.analysis.command_map import calibrate

    result = calibrate(load_run(a.run_dir), a.points, a.episodes, a.seed, a.backend, a.refine,
                       progress=lambda line: print(f"[calibrate] {line}", file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2))
    print(f"policygen: command map written to {result['map']} ({result['env_steps_used']} env steps); generate "
          f"and sweep use it from now on (--raw: the generator alone)", file=sys.stderr)
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Train a generator on a small MuJoCo task, command it across the seen range, show the table."""
    from policygen.algorithms.base import RunConfig
    from policygen.algorithms.loading import load_run
    from policygen.algorithms.trainer import start_run
    from policygen.analysis.sweep import parse_commands, plot_sweep, seen_range, sweep, table
    from policygen.runs.files import atomic_write_json

    rc = RunConfig(env_id=a.env, steps=a.steps, seed=a.seed, eval_every=max(1000, a.steps // 10))
    print(f"[demo] training {a.algo} on {a.env} for {a.steps} env steps -> {a.out}", file=sys.stderr)
    run = start_run(a.algo, rc, a.out, force=True, progress=None)
    print(f"[demo] trained in {run.summary['wall_s']:.0f} s; final evaluation return "
          f"{run.summary['final_eval_return']:.1f}", file=sys.stderr)
    loaded = load_run(a.out)
    seen = seen_range(loaded)
    result = sweep(loaded, parse_commands(f"{seen[0]}:{seen[1]}:{a.n_commands}", seen), a.episodes, a.seed)
    plot = str(Path(a.out) / "sweep.png")
    plot_sweep(result, plot)
    atomic_write_json(Path(a.out) / "sweep.json", result)
    print(f"\ncommanded vs achieved return on {a.env} ({a.episodes} episodes each), the generator alone:")
    print(table(result))
    plots = [plot]
    if not a.no_map:
        import numpy as np

        from policygen.analysis.command_map import calibrate

        print("[demo] fitting the generator's command map (policygen calibrate) on other episodes", file=sys.stderr)
        fit = calibrate(loaded, seed=a.seed + 1,
                        progress=lambda line: print(f"[calibrate] {line}", file=sys.stderr, flush=True))
        mapped = sweep(load_run(a.out), np.asarray(result["commands"]), a.episodes, a.seed)
        plots.append(str(Path(a.out) / "sweep-mapped.png"))
        plot_sweep(mapped, plots[-1])
        atomic_write_json(Path(a.out) / "sweep-mapped.json", mapped)
        print(f"\nthe same commands through its command map (fitted after training on {fit['env_steps_used']} "
              f"env steps of other episodes):")
        print(table(mapped))
    print(f"\nplot: {', '.join(plots)}\nrun:  {a.out}  (policygen generate {a.out} --command R --out policy.pt; "
          f"--raw: the generator alone)")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from policygen.analysis.bench import bench_rollout

    try:
        hidden = tuple(int(h) for h in a.hidden.split(",") if h.strip())
    except ValueError:
        raise PolicygenError(f"--hidden takes comma-separated widths like 256,256; got {a.hidden!r}") from None
    if a.compare_local and a.backend != "ray":
        raise PolicygenError(f"--compare-local measures --backend ray beside the local engine; got --backend "
                             f"{a.backend!r}")
    ray = dict(ray_address=a.ray_address, ray_workers=a.ray_workers, compare_local=a.compare_local,
               env_threads=a.env_threads or None)
    print(json.dumps(bench_rollout(a.env, a.policies, hidden, a.seconds, a.backend, a.num_envs, a.seed, **ray),
                     indent=2))
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    from policygen.analysis.runs_list import list_runs, runs_table

    rows = list_runs(a.root)
    if a.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(runs_table(rows))
    else:
        print(f"no run directories under {a.root}", file=sys.stderr)
    return 0


def cmd_map(a: argparse.Namespace) -> int:
    from policygen.algorithms.loading import load_run
    from policygen.analysis.policy_map import pick_snapshots, plot_map, policy_map
    from policygen.runs.files import check_output

    out = check_output(a.out, (".png",), a.force, "map")
    loaded = load_run(a.run_dir)
    snaps = pick_snapshots(loaded.run.snapshots(), a.snapshots) if a.snapshots else []
    result = policy_map(loaded, a.n_commands, a.max_points, a.n_probe, a.seed,
                        [(name, load_run(a.run_dir, name)) for name in snaps])
    plot_map(result, out)
    skip = ("coords", "returns", "command_coords")
    result["panels"] = [{k: v for k, v in p.items() if k not in skip} for p in result["panels"]]
    print(json.dumps({"out": str(out), **result}, indent=2))
    return 0


def cmd_render(a: argparse.Namespace) -> int:
    from policygen.analysis.render import VIDEO_SUFFIXES, parse_size, policies_to_render, render_policies
    from policygen.runs.files import check_output

    out = check_output(a.out, VIDEO_SUFFIXES, a.force, "video")
    size = parse_size(a.size)
    policies, env_id, env_kwargs = policies_to_render(a.target, a.commands, a.env)
    if a.env_kwargs:
        env_kwargs = json.loads(a.env_kwargs)
    result = render_policies(policies, env_id, out, a.episodes, a.seed, env_kwargs, size, a.fps, a.max_steps)
    print(json.dumps(result, indent=2))
    return 0


def cmd_suite(a: argparse.Namespace) -> int:
    from policygen.analysis.suites import cells, load_suite, parse_list, run_suite, suite_table

    todo = cells(load_suite(a.name), parse_list(a.algos), parse_list(a.envs), parse_list(a.seeds, int))
    if a.list:
        print(suite_table(Path(a.out), todo))
        return 0
    result = run_suite(a.name, a.out, a.jobs, todo, echo=lambda m: print(m, file=sys.stderr, flush=True),
                       env_threads=a.env_threads)
    print(json.dumps(result, indent=2))
    return 1 if result["failed"] else 0


def _suite_parser(bsub) -> None:
    from policygen.analysis.suites import SUITES

    s = bsub.add_parser("suite", help="run a declared grid of (algorithm, env, seed, budget) as a resumable queue")
    s.add_argument("name", help=f"suite: {', '.join(SUITES)}, or a .json file of the same shape")
    s.add_argument("--out", required=True, help="suite folder: runs/ENV-ALGO-sSEED, logs/, suite.json")
    s.add_argument("--jobs", type=COUNT, default=2, help="training processes at once (default 2)")
    s.add_argument("--env-threads", type=NONNEG, default=None,
                   help="EnvPool threads of each new cell (default: CPUs / jobs, at least 1; 0 = train's default)")
    s.add_argument("--list", action="store_true", help="list the cells and their state (done, partial, pending, "
                   "running) without running anything")
    s.add_argument("--algos", help="only these algorithms of the grid, comma separated")
    s.add_argument("--envs", help="only these envs of the grid, comma separated")
    s.add_argument("--seeds", help="only these seeds of the grid, comma separated")
    s.set_defaults(func=cmd_suite)


def cmd_report(a: argparse.Namespace) -> int:
    from policygen.analysis.report import build_report

    result = build_report(a.inputs, a.out, a.env)
    for line in result["skipped"]:
        print(f"policygen: skipped {line}", file=sys.stderr)
    for line in result["notes"]:
        print(f"policygen: note: {line}", file=sys.stderr)
    figures = [f for e in result["envs"].values() for f in e["figures"].values()]
    print(json.dumps({"report": str(Path(a.out) / "report.md"), "figures": figures, "runs_used": result["runs_used"],
                      "skipped": result["skipped"], "envs": list(result["envs"])}, indent=2))
    return 0


def _report_parser(sub) -> None:
    r = sub.add_parser("report", help="benchmark report (Markdown + PNGs) from run directories or suite folders")
    r.add_argument("inputs", nargs="+", metavar="RUNS_OR_SUITE_DIR", help="run directories, or folders of them")
    r.add_argument("--out", required=True, help="folder for report.md, report.json and the figures (overwritten)")
    r.add_argument("--env", help="only the runs of this env id (the others are listed as skipped)")
    r.set_defaults(func=cmd_report)


def _ray_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --backend ray: cluster to join (HOST:PORT of `ray start --head`, or auto); "
                        "default: start a local cluster")
    p.add_argument("--ray-workers", type=NONNEG, default=0, metavar="N",
                   help="with --backend ray: actors, one CPU each (default 0: one per CPU of the cluster)")


def build_parser() -> argparse.ArgumentParser:
    from policygen import __version__
    from policygen import cli_make_an_agent as maa

    p = argparse.ArgumentParser(prog="policygen", description="Policy generators and the baselines they beat.")
    p.add_argument("--version", action="version", version=f"policygen {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train an algorithm; writes a run directory")
    t.add_argument("algo", nargs="?", help="ars, gogepo, udrlpg, make-an-agent; baselines: td3, sac, ddpg "
                   "(SB3), ars-sb3 (sb3-contrib), udrl (classic Upside-Down RL)")
    t.add_argument("--env", help="Gymnasium env id with a continuous action space, e.g. Hopper-v5")
    t.add_argument("--steps", type=COUNT, default=100_000, help="env steps used for learning (default 100000)")
    t.add_argument("--seed", type=SEED, default=0, help="seed of the whole run (default 0)")
    t.add_argument("--preset", help="named settings of the algorithm (e.g. paper, fast); default: the "
                                    "algorithm's own, chosen by env for ars and gogepo (config.json records it)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one algorithm setting, repeatable (e.g. --set step_size=0.02)")
    t.add_argument("--backend", default="auto",
                   help="auto, envpool, gymnasium, mujoco (Gymnasium's numbers on C++ threads; Hopper, Swimmer, "
                        "HalfCheetah, Walker2d, InvertedPendulum v5), or ray (rollouts spread over Ray actors); "
                        "default auto: envpool if it has the task, else mujoco, else gymnasium")
    _ray_flags(t)
    t.add_argument("--num-envs", type=ENVS, default=64, help="environments stepped together (default 64)")
    t.add_argument("--torch-threads", type=NONNEG, default=1,
                   help="torch threads for the updates (default 1: the other core steps the physics; 0 = torch's)")
    t.add_argument("--env-threads", type=NONNEG, default=0,
                   help="EnvPool's or mujoco's worker threads, or the Gymnasium backend's processes (default 0: "
                        "EnvPool and mujoco min(num-envs, 2), Gymnasium 1; 1 when two runs share 2 cores)")
    t.add_argument("--eval-every", type=COUNT, help="evaluate every N env steps (default steps/20)")
    t.add_argument("--eval-episodes", type=COUNT, default=10, help="episodes per evaluation (default 10)")
    t.add_argument("--checkpoint-every", type=COUNT, default=20, help="checkpoint every N iterations (default 20; "
                   "the step-based baselines checkpoint at every evaluation)")
    t.add_argument("--max-failures", type=NONNEG, default=100,
                   help="episodes the env may spoil (raise, NaN/inf, hang) before the run stops (default 100)")
    t.add_argument("--step-timeout", type=_finite(), default=60.0,
                   help="seconds an env step may take before it counts as hung (Gymnasium backend; 0: off)")
    t.add_argument("--env-kwargs", help='JSON keyword arguments for the env, e.g. \'{"reset_noise_scale": 0}\'')
    t.add_argument("--out", help="run directory (default runs/ALGO-ENV-sSEED)")
    t.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run; no other argument needed")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--snapshots", type=NONNEG, default=0,
                   help="keep N snapshots of the state at evenly spaced steps (for policygen map; default 0)")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard/ (tensorboard --logdir RUN_DIR)")
    maa.add_train_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's policy or a policy file; prints JSON")
    e.add_argument("target", help="run directory or policy file (.safetensors, .pt or .onnx)")
    e.add_argument("--env", help="env id (default: the one the policy was made for)")
    e.add_argument("--episodes", type=COUNT, default=10, help="episodes (default 10)")
    e.add_argument("--command", type=_finite(), help="return command, for generator runs")
    e.add_argument("--seed", type=SEED, default=0, help="seed of the evaluation episodes (default 0)")
    e.add_argument("--backend", default="auto", help="auto, envpool, gymnasium or mujoco")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("generate", help="a run's policy (a generator's for a return command) as a file")
    g.add_argument("run_dir", help="run directory (gogepo, udrlpg; ars without --command; make-an-agent with --prompt)")
    g.add_argument("--command", type=_finite(),
                   help="desired return (the run's convention); without it, the run's evaluation policy "
                        "(a generator's output for the best return seen, ARS's current policy)")
    g.add_argument("--out", required=True, help="policy file (a folder with --prompt): .safetensors (policygen), "
                   ".pt (TorchScript, needs "
                   "only torch) or .onnx (needs only onnxruntime); a missing folder is created")
    g.add_argument("--force", action="store_true", help="overwrite an existing file")
    g.add_argument("--raw", action="store_true", help="give the generator the command itself, not the input its "
                                                      "command map (policygen calibrate) picks for it")
    maa.add_generate_flags(g, COUNT, SEED)
    g.set_defaults(func=cmd_generate)
    maa.add_parsers(sub, COUNT, NONNEG, SEED, _finite)

    w = sub.add_parser("sweep", help="command a generator across returns; JSON + calibration plot")
    w.add_argument("run_dir", help="run directory of a generator (gogepo, udrlpg)")
    w.add_argument("--commands", help="LO:HI:N or A,B,C (default: 21 over the returns seen in training)")
    w.add_argument("--episodes", type=COUNT, default=5, help="episodes per command (default 5)")
    w.add_argument("--seed", type=SEED, default=0, help="seed of the evaluation episodes (default 0)")
    w.add_argument("--backend", help="auto, envpool, gymnasium or mujoco (default: the run's)")
    w.add_argument("--plot", help="PNG path (default RUN_DIR/sweep.png, unseen.png with --unseen-report); the "
                                  "JSON is printed and written to RUN_DIR/sweep.json (unseen.json). With a "
                                  "--backend other than the run's both are named sweep-on-BACKEND, with --raw "
                                  "beside a command map sweep-raw, else with --commands sweep-custom, so the default "
                                  "sweep (the run's calibration, which policygen report reads) is kept")
    w.add_argument("--snapshot", metavar="FILE",
                   help="sweep the generator as it was at this snapshot (a file name in RUN_DIR/checkpoints/ kept "
                        "by train --snapshots N) instead of the latest; writes sweep-<snapshot>.json/.png")
    w.add_argument("--unseen-report", action="store_true",
                   help="udrlpg runs: label each command seen bucket / never-filled bucket / above range / "
                        "held-out band by the final buffer, and report error and Spearman per group (default "
                        "commands: 25 from the lowest stored return to 0.2 x the stored range above the highest)")
    w.add_argument("--raw", action="store_true", help="the generator alone: ignore the run's command map")
    w.set_defaults(func=cmd_sweep)

    k = sub.add_parser("calibrate", help="fit a generator's command map: which input earns which return")
    k.add_argument("run_dir", help="run directory of a generator (gogepo, udrlpg)")
    k.add_argument("--points", type=COUNT, default=21, help="commands rolled out, evenly over the returns seen "
                                                            "in training (default 21)")
    k.add_argument("--episodes", type=COUNT, default=10, help="episodes per command (default 10)")
    k.add_argument("--seed", type=SEED, default=1, help="seed of the episodes (default 1: not sweep's 0, so a "
                                                        "default sweep judges the map on other episodes)")
    k.add_argument("--refine", type=NONNEG, default=3, help="rounds adding midpoints where the return climbs "
                                                           "most steeply, points // 2 each (default 3)")
    k.add_argument("--backend", help="auto, envpool, gymnasium or mujoco (default: the run's)")
    k.set_defaults(func=cmd_calibrate)

    d = sub.add_parser("demo", help="the main job: train a generator, command it, print and plot")
    d.add_argument("--algo", default="gogepo", help="generator to train: gogepo (default) or udrlpg")
    # Reacher: its return (minus the distance to a target, summed) moves smoothly with the policy, so the table
    # shows the command at work; InvertedPendulum's is a step (a policy balances to 1000 or falls early)
    d.add_argument("--env", default="Reacher-v5", help="MuJoCo task (default Reacher-v5)")
    d.add_argument("--steps", type=COUNT, default=100_000, help="env steps (default 100000)")
    d.add_argument("--seed", type=SEED, default=0)
    d.add_argument("--n-commands", type=COUNT, default=11, help="commands across the seen range (default 11)")
    d.add_argument("--episodes", type=COUNT, default=5, help="episodes per command (default 5)")
    d.add_argument("--out", default="runs/demo", help="run directory (default runs/demo, overwritten)")
    d.add_argument("--no-map", action="store_true",
                   help="skip the command map (policygen calibrate) and its second table")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("runs", help="list run directories: status, env, algorithm, best and last evaluation")
    r.add_argument("root", nargs="?", default="runs", help="folder to search, 3 levels deep (default runs/)")
    r.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    r.set_defaults(func=cmd_runs)

    m = sub.add_parser("map", help="policy-space map: buffer policies' fingerprints by PCA, the generator's path")
    m.add_argument("run_dir", help="run directory of a generator (gogepo, udrlpg)")
    m.add_argument("--out", required=True, help="PNG file (a missing folder is created)")
    m.add_argument("--n-commands", type=COUNT, default=11, help="commands over the seen range for the path (11)")
    m.add_argument("--max-points", type=COUNT, default=1000, help="buffer policies mapped at most, a seeded sample")
    m.add_argument("--n-probe", type=COUNT, default=200,
                   help="observed states used as probes for runs without an evaluator (default 200)")
    m.add_argument("--seed", type=SEED, default=0, help="seed of the sample and of the probing episodes")
    m.add_argument("--snapshots", type=NONNEG, default=0, metavar="K",
                   help="also draw K of the run's snapshots (train --snapshots N), evenly picked, one panel each")
    m.add_argument("--force", action="store_true", help="overwrite an existing file")
    m.set_defaults(func=cmd_map)

    v = sub.add_parser("render", help="render policies offscreen to a GIF or MP4, the return drawn on the frames")
    v.add_argument("target", help="policy file (.safetensors, .pt, .onnx) or run directory")
    v.add_argument("--out", required=True, help="video file: .gif or .mp4 (a missing folder is created)")
    v.add_argument("--env", help="env id (default: the one the policy or run was made for)")
    v.add_argument("--commands", help="run directories of generators: A,B,C renders the policies for these "
                   "return commands side by side (default: the run's evaluation policy)")
    v.add_argument("--episodes", type=COUNT, default=1, help="episodes per policy, one after the other (default 1)")
    v.add_argument("--seed", type=SEED, default=0, help="episode i starts from reset(seed=SEED + i) (default 0)")
    v.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of one panel (default 320x240)")
    v.add_argument("--fps", type=_finite(positive=True), default=30, help="frames per second of the video (default 30)")
    v.add_argument("--max-steps", type=COUNT, help="stop each episode after this many steps")
    v.add_argument("--env-kwargs", help="JSON keyword arguments for the env, e.g. "
                   "'{\"terminate_when_unhealthy\": false}'")
    v.add_argument("--force", action="store_true", help="overwrite an existing file")
    v.set_defaults(func=cmd_render)

    b = sub.add_parser("bench", help="benchmarks; print JSON")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="BENCH")
    br = bsub.add_parser("rollout", help="engine env steps/s beside the raw backend's, measured in one run")
    br.add_argument("--env", default="Hopper-v5", help="env id (default Hopper-v5)")
    br.add_argument("--policies", type=COUNT, default=64, help="policies per engine call (default 64)")
    br.add_argument("--hidden", default="256,256", help="hidden widths, comma separated (default 256,256)")
    br.add_argument("--seconds", type=_finite(positive=True), default=20.0,
                    help="measuring time, split between the two")
    br.add_argument("--backend", default="auto", help="auto, envpool, gymnasium, mujoco or ray")
    _ray_flags(br)
    br.add_argument("--compare-local", action="store_true",
                    help="with --backend ray: measure the local engine too, alternated, and report ratio_to_local")
    br.add_argument("--num-envs", type=ENVS, help="env slots (default min(policies, 64))")
    br.add_argument("--env-threads", type=NONNEG, default=0, help="EnvPool threads or Gymnasium processes, engine "
                    "and raw alike (default 0: EnvPool min(num-envs, 2), Gymnasium 1)")
    br.add_argument("--seed", type=SEED, default=0)
    br.set_defaults(func=cmd_bench)
    _suite_parser(bsub)
    _report_parser(sub)
    return p


_MAY_BE_NEGATIVE = ("--commands", "--command")
"""Options whose value may start with '-': argparse takes "-100:-5:3" or "-100,-50" for an option otherwise."""


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--commands -100:-5:3`` -> ``--commands=-100:-5:3`` (a value starting with '-' then a digit or '.')."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if tok in _MAY_BE_NEGATIVE and re.match(r"-[\d.]", nxt):
            out.append(f"{tok}={nxt}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    # only from the main thread (signal's rule), and not over a handler someone else installed
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return args.func(args)
    except PolicygenError as e:
        print(f"policygen: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever it quotes
        return 2
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"policygen: {how}; a training run resumes with --resume RUN_DIR, from where it stopped if it "
              f"finished its iteration, else from its last checkpoint",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
