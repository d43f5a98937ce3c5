"""The command line of Make-An-Agent: ``collect``, ``prompt``, ``train make-an-agent``, ``generate --prompt``,
``report-agent``.

Kept beside cli.py (which calls in here) so each method's commands live in one place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from policygen.errors import PolicygenError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_make_an_agent_run(path: str | None) -> bool:
    if not path:
        return False
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("algorithm") == "make-an-agent"
    except (OSError, ValueError, AttributeError):
        return False


def cmd_train_make_an_agent(a: argparse.Namespace) -> int:
    from policygen.algorithms.make_an_agent.train import train_make_an_agent
    from policygen.cli import _kv

    out = a.resume or a.out
    if not out:
        raise PolicygenError("train make-an-agent needs --out RUN_DIR (and --dataset DIR for a new run)")
    run = train_make_an_agent(a.dataset, out, _kv(a.set), seed=a.seed, force=a.force,
                              log=None if a.quiet else _log, torch_threads=a.torch_threads)
    print(json.dumps({"run_dir": str(run.path), **run.summary}, indent=2))
    return 0


def cmd_generate_prompted(a: argparse.Namespace) -> int:
    import torch

    from policygen.algorithms.make_an_agent.generate import generate_policies

    if a.prompt is None:
        raise PolicygenError(f"{a.run_dir} is a make-an-agent run: it generates from behaviour prompts; pass "
                             f"--prompt FILE (policygen prompt) or a data set folder")
    if a.command is not None:
        raise PolicygenError("--prompt (make-an-agent) and --command (return-conditioned generators) exclude "
                             "each other")
    torch.set_num_threads(1)
    print(json.dumps(generate_policies(a.run_dir, a.prompt, a.n, a.out, a.seed, a.force), indent=2))
    return 0


def cmd_collect(a: argparse.Namespace) -> int:
    from policygen.algorithms.make_an_agent.collect import collect
    from policygen.buffers.policy_dataset import PromptLayout

    layout = PromptLayout(a.prompt_steps, a.state_every, a.outcome_states)
    if a.sb3_sac:
        from policygen.algorithms.make_an_agent.collect import collect_sb3

        result = collect_sb3(a.run_dirs, a.env, a.out, a.copies, a.noise, a.seed, layout, a.backend, log=_log)
    else:
        result = collect(a.run_dirs, a.out, a.copies, a.noise, a.seed, layout, a.backend, log=_log)
    print(json.dumps(result, indent=2))
    return 0


def cmd_prompt(a: argparse.Namespace) -> int:
    from policygen.algorithms.make_an_agent.generate import record_prompts, write_prompts
    from policygen.algorithms.make_an_agent.train import load_make_an_agent
    from policygen.analysis.evaluate import check_fits
    from policygen.policies.io import load_policy
    from policygen.runs.files import check_output

    out = check_output(a.out, (".safetensors",), a.force, "prompt file")
    layout = load_make_an_agent(a.for_run).layout if a.for_run else None
    if layout is None:
        from policygen.buffers.policy_dataset import PromptLayout

        layout = PromptLayout()
    policy = load_policy(a.policy)
    env_id = a.env or policy.meta.get("env_id")
    if not env_id:
        raise PolicygenError(f"{a.policy} does not name its environment; pass --env ENV_ID")
    check_fits(policy, env_id)
    prompts = record_prompts(policy, env_id, a.episodes, layout, a.seed, a.backend)
    write_prompts(out, prompts, layout, env_id)
    print(json.dumps({"out": str(out), "env_id": env_id, "episodes": a.episodes,
                      "returns": [float(r) for r in prompts["returns"]],
                      **({"success": [int(x) for x in prompts["success"]]}
                         if check_success(env_id) else {})}, indent=2))
    return 0


def cmd_report_agent(a: argparse.Namespace) -> int:
    import torch

    from policygen.analysis.agent_report import agent_report, write_report

    try:
        noise = tuple(float(x) for x in a.noise.split(",") if x.strip())
    except ValueError:
        raise PolicygenError(f"--noise takes comma-separated levels like 0,0.05,0.1; got {a.noise!r}") from None
    torch.set_num_threads(1)
    rep = agent_report(a.run_dir, a.prompts, a.n, a.episodes, noise or (0.0,), a.bc, a.data_candidates,
                       a.max_prompts, a.seed, a.backend, log=_log)
    files = write_report(rep, a.out)
    print(json.dumps({**files, "summary": rep["summary"]}, indent=2))
    return 0


def check_success(env_id: str) -> bool:
    from policygen.envs.make import env_info

    return env_info(env_id).success_signal


def add_parsers(sub, count, nonneg, seed, finite) -> None:
    """``collect`` and ``prompt`` subcommands."""
    c = sub.add_parser("collect", help="make-an-agent: a policy data set from the checkpoints of training runs")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="training runs (ars, gogepo, udrlpg); every snapshot (train --snapshots N) and the latest "
                        "checkpoint is a source (with --sb3-sac: SAC runs, train sac --snapshots N, or .zip files)")
    c.add_argument("--out", required=True, help="data set folder (created; a rerun continues it)")
    c.add_argument("--sb3-sac", action="store_true",
                   help="the sources are Stable-Baselines3 SAC checkpoints: policygen SAC runs (their snapshots "
                        "and latest model) or .zip files (only policy.pth is read, pickle-free); their "
                        "deterministic actor is the policy")
    c.add_argument("--env", help="with --sb3-sac and .zip files: the env id they were trained on")
    c.add_argument("--copies", type=nonneg, default=15,
                   help="noisy copies per checkpoint, noise growing from 0 to --noise (default 15)")
    c.add_argument("--noise", type=finite(), default=0.5,
                   help="largest parameter noise, in units of the checkpoint's RMS weight (default 0.5)")
    c.add_argument("--seed", type=seed, default=0, help="seed of the noise and the episodes (default 0)")
    c.add_argument("--prompt-steps", type=count, default=60, help="opening steps in a prompt (default 60)")
    c.add_argument("--state-every", type=count, default=3, help="keep every N-th state of them (default 3)")
    c.add_argument("--outcome-states", type=count, default=3, help="outcome states per record (default 3)")
    c.add_argument("--backend", default="auto", help="auto, envpool or gymnasium")
    c.set_defaults(func=cmd_collect)

    p = sub.add_parser("prompt", help="make-an-agent: record episodes of a policy as a behaviour prompt file")
    p.add_argument("policy", help="policy file (.safetensors)")
    p.add_argument("--out", required=True, help="prompt file (.safetensors)")
    p.add_argument("--env", help="env id (default: the one the policy was made for)")
    p.add_argument("--episodes", type=count, default=1, help="prompt trajectories to record (default 1)")
    p.add_argument("--for-run", help="make-an-agent run whose prompt layout to use (default 60/3/3)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the episodes (default 0)")
    p.add_argument("--backend", default="auto", help="auto, envpool or gymnasium")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_prompt)

    r = sub.add_parser("report-agent", help="make-an-agent: per task success of generated policies beside "
                       "behaviour cloning and the best training data (tasks with a success signal, MetaWorld)")
    r.add_argument("run_dir", help="finished make-an-agent run")
    r.add_argument("--prompts", nargs="+", required=True, metavar="FILE",
                   help="prompt files (policygen prompt), one per task, the task read from the file; or ENV_ID=FILE")
    r.add_argument("--out", required=True, help="folder for report.md and report.json (overwritten)")
    r.add_argument("--n", type=count, default=20, help="generated policies per task and noise level (default 20)")
    r.add_argument("--episodes", type=count, default=5, help="episodes per policy (default 5)")
    r.add_argument("--noise", default="0", help="prompt noise levels, comma separated, e.g. 0,0.05,0.1 (Gaussian, "
                   "in units of the run's observation std and of the action bound; default 0)")
    r.add_argument("--bc", type=nonneg, default=5,
                   help="behaviour-cloning policies per task, cloned from the same prompts (default 5; 0: none)")
    r.add_argument("--data-candidates", type=nonneg, default=20,
                   help="seen tasks: re-run this many best records of the training data (default 20; 0: none)")
    r.add_argument("--max-prompts", type=count, help="use the first K prompts of each file (default all)")
    r.add_argument("--seed", type=seed, default=0, help="seed of generation, noise and episodes (default 0)")
    r.add_argument("--backend", default="auto", help="auto or envpool")
    r.set_defaults(func=cmd_report_agent)


def add_generate_flags(g, count, seed) -> None:
    g.add_argument("--prompt", help="make-an-agent runs: prompt file (policygen prompt) or data set folder; "
                   "writes --n policies into the folder --out")
    g.add_argument("--n", type=count, default=1, help="with --prompt: policies to generate, policy i from prompt "
                   "i mod K (default 1)")
    g.add_argument("--seed", type=seed, default=0, help="with --prompt: seed of the diffusion noise (default 0)")


def add_train_flags(t) -> None:
    t.add_argument("--dataset", help="make-an-agent: the policy data set to train on (policygen collect)")
