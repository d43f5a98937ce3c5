"""Fuzzing: mutated checkpoints, policy files and run configs, and mutated command lines, give either a
result or one documented error (``PolicygenError``; argparse's usage error, exit 2), never a traceback or
a hang. ``FUZZ_EXAMPLES`` scales the campaign (bench/fuzz.sh runs a large one)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policygen.algorithms.base import RunConfig
from policygen.algorithms.loading import load_run
from policygen.algorithms.trainer import start_run
from policygen.cli import main
from policygen.errors import PolicygenError
from policygen.policies.io import load_policy, save_policy
from policygen.runs.files import load_state

STUB = "policygen-tests/Stub-v0"
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))
BASE = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def fuzz(examples: int) -> settings:
    """``examples`` (times FUZZ_EXAMPLES) derandomised examples: the same cases on every run."""
    return settings(BASE, max_examples=max(1, int(examples * SCALE)))
TINY = {"gogepo": {"hidden": "8,8", "chunk": "4", "generator_hidden": "16,16", "evaluator_hidden": "16,16",
                   "n_probe": "4", "batch_size": "8"},
        "udrlpg": {"policy_hidden": "8,8", "chunk": "4", "embed_dim": "4", "generator_hidden": "16,16",
                   "batch_size": "8", "hand_set_range": "false"},
        "ars": {}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-runs")
    out = {}
    for algo, over in TINY.items():
        rc = RunConfig(env_id=STUB, steps=200, backend="gymnasium", num_envs=4, eval_every=100, eval_episodes=1)
        out[algo] = start_run(algo, rc, str(root / algo), overrides=over, quiet=True).path
    policy = load_run(str(out["gogepo"])).generate(1.0)
    out["policy"] = save_policy(policy, root / "p.safetensors")
    return out


def copy_run(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


# --- mutations -------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, (*prefix, i))


def _set(tree, path, value):
    if not path:
        return value
    node = tree
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) or isinstance(path[-1], int):
        node[path[-1]] = value
    return tree


def mutate_json(data, draw):
    """Replace one value anywhere in a JSON tree (or delete a key) with something drawn."""
    paths = list(_paths(data))
    path = paths[draw(st.integers(0, len(paths) - 1))]
    if path and draw(st.booleans()) and isinstance(path[-1], str):
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return data
    return _set(data, path, draw(json_values))


def mutate_safetensors(blob: bytes, draw) -> bytes:
    """Byte-level damage (flips, truncation, insertion) or a JSON-level change inside the header/tree."""
    kind = draw(st.sampled_from(["bytes", "header", "tree", "tree"]))
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if kind == "bytes":
        data = bytearray(blob)
        for _ in range(draw(st.integers(1, 4))):
            op, pos = draw(st.sampled_from(["flip", "cut", "insert"])), draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[pos] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del data[pos:]
                if not data:
                    break
            else:
                data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)
    meta = header.get("__metadata__", {})
    if kind == "tree" and "tree" in meta:
        meta["tree"] = json.dumps(mutate_json(json.loads(meta["tree"]), draw))
    else:
        header = mutate_json(header, draw)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


COUNTS = {"files": 0, "command_lines": 0, "documented_errors": 0}


@pytest.fixture(scope="module", autouse=True)
def report():
    """With FUZZ_REPORT=PATH, write how many cases ran (bench/reliability.sh records it)."""
    yield
    if os.environ.get("FUZZ_REPORT"):
        with open(os.environ["FUZZ_REPORT"], "w") as f:
            json.dump(COUNTS, f)


def documented(call, *args):
    """Run ``call``: a result or a ``PolicygenError`` passes; any other exception fails the test."""
    try:
        return call(*args)
    except PolicygenError as e:
        COUNTS["documented_errors"] += 1
        assert "Traceback" not in str(e)
        return None


# --- files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ars", "gogepo", "udrlpg"])
def test_mutated_checkpoints_load_or_fail_with_one_error(runs, tmp_path, algo):
    src = runs[algo]
    blob = (src / "checkpoints/latest.safetensors").read_bytes()

    @fuzz(200)
    @given(st.data())
    def check(data):
        run = copy_run(src, tmp_path / "run")
        (run / "checkpoints/latest.safetensors").write_bytes(mutate_safetensors(blob, data.draw))
        COUNTS["files"] += 1
        documented(load_state, run / "checkpoints/latest.safetensors", "checkpoint")
        loaded = documented(load_run, str(run))
        if loaded is not None:
            documented(loaded.policy)

    check()


@fuzz(150)
@given(st.data())
def test_mutated_policy_files_load_or_fail_with_one_error(runs, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pol") / "p.safetensors"
    path.write_bytes(mutate_safetensors(runs["policy"].read_bytes(), data.draw))
    COUNTS["files"] += 1
    policy = documented(load_policy, path)
    if policy is not None:
        documented(policy, [0.0, 0.0])


@pytest.mark.parametrize("name", ["config.json", "status.json", "summary.json"])
def test_mutated_run_files_load_or_fail_with_one_error(runs, tmp_path, name):
    src = runs["gogepo"]
    tree = json.loads((src / name).read_text())

    @fuzz(50)
    @given(st.data())
    def check(data):
        run = copy_run(src, tmp_path / "run")
        text = json.dumps(mutate_json(json.loads(json.dumps(tree)), data.draw))
        if data.draw(st.booleans()):
            text = text[: data.draw(st.integers(0, len(text)))]
        (run / name).write_text(text)
        COUNTS["files"] += 1
        loaded = documented(load_run, str(run))
        if loaded is not None:
            documented(loaded.policy)
        assert cli_ok(["evaluate", str(run), "--episodes", "1"])

    check()


# --- command lines ---------------------------------------------------------------------------------
NUMBERS = ["0", "1", "-1", "3", "1e2", "nan", "inf", "-inf", "1.5", "abc", "", "99999999999999999999", "0x10"]
PATHS = ["@run", "@run/checkpoints/latest.safetensors", "@policy", "@missing", "@file", "/", "@out", ""]
FLAGS = {
    "train": {"--env": [STUB, "CartPole-v1", "Hoper-v5", "policygen-tests/Image-v0", "", "x" * 300],
              "--steps": NUMBERS, "--seed": NUMBERS, "--preset": ["fast", "paper", "nope", ""],
              "--set": ["hidden=4", "sigma=-1", "nope=1", "batch_size=0", "=", "chunk", "n_buckets=0",
                        "return_range=5,1", "holdout_band=0.6,0.4", "learning_rate=nan"],
              "--backend": ["auto", "gymnasium", "envpool", "ray", "x"], "--num-envs": NUMBERS,
              "--eval-every": NUMBERS, "--eval-episodes": NUMBERS, "--checkpoint-every": NUMBERS,
              "--env-kwargs": ['{"healthy_reward": 1}', "[1]", "{", '{"nope": 1}', "null"],
              "--out": PATHS, "--resume": PATHS, "--max-failures": NUMBERS, "--step-timeout": NUMBERS,
              "--torch-threads": NUMBERS, "--force": None},
    "evaluate": {"--env": [STUB, "CartPole-v1", "Hoper-v5", "InvertedPendulum-v5"], "--episodes": NUMBERS,
                 "--command": NUMBERS, "--seed": NUMBERS, "--backend": ["gymnasium", "x"]},
    "generate": {"--command": NUMBERS, "--out": ["@out.safetensors", "@out.pt", "@out.txt", "@file", "/x/y.pt"],
                 "--force": None},
    "sweep": {"--commands": ["0:1:3", "1:0:2", "0:1:0", "a,b", "1,2", "", "0:1:99999999"], "--episodes": NUMBERS,
              "--seed": NUMBERS, "--backend": ["gymnasium", "x"], "--plot": ["@out.png", "/x/y.png"],
              "--unseen-report": None},
    "bench": {},
    "map": {"--out": ["@out.png", "@out.gif", "/x/y.png", "@file"], "--n-commands": NUMBERS, "--max-points": NUMBERS,
            "--n-probe": NUMBERS, "--seed": NUMBERS, "--snapshots": NUMBERS, "--force": None},
    "runs": {"--json": None},
}
ALGOS = ["ars", "gogepo", "udrlpg", "nope", ""]
SAFE_TAIL = {"train": ["--steps", "40", "--num-envs", "4", "--eval-episodes", "1", "--quiet", "--backend",
                       "gymnasium"],
             "evaluate": ["--episodes", "1"], "sweep": ["--episodes", "1"],
             "map": ["--max-points", "50", "--n-probe", "20", "--n-commands", "3"]}


def cli_ok(argv: list[str]) -> bool:
    """``policygen ARGV``: exit 0 or one error line (exit 2), and nothing that looks like a traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2)
            code = e.code
    text = err.getvalue()
    assert code in (0, 2), (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    if code == 2 and "usage:" not in text:
        assert text.startswith("policygen: error: ") and text.strip().count("\n") == 0, (argv, text)
    return True


@fuzz(150)
@given(st.data())
def test_mutated_command_lines_exit_0_or_2_with_one_line(runs, tmp_path_factory, monkeypatch, data):
    here = tmp_path_factory.mktemp("cli")
    monkeypatch.chdir(here)
    (here / "file").write_text("not a run")
    # a copy: a fuzzed `train --out RUN --force` may overwrite it
    run = copy_run(runs[data.draw(st.sampled_from(["ars", "gogepo", "udrlpg"]))], here / "run")
    places = {"@run": str(run),
              "@policy": str(runs["policy"]), "@missing": str(here / "missing"), "@file": str(here / "file"),
              "@out": str(here / "out")}

    def value(v: str) -> str:
        for key in sorted(places, key=len, reverse=True):
            v = v.replace(key, places[key])
        return v

    sub = data.draw(st.sampled_from([*FLAGS, "nope"]))
    argv = [sub]
    if sub == "train":
        argv.append(data.draw(st.sampled_from(ALGOS)))
    elif sub in ("evaluate", "generate", "sweep", "map", "runs"):
        argv.append(value(data.draw(st.sampled_from(PATHS))))
    elif sub == "bench":
        argv += ["rollout", "--env", STUB, "--policies", data.draw(st.sampled_from(["1", "0", "-2", "x"])),
                 "--hidden", data.draw(st.sampled_from(["4", "", "0", "a,b", "4,-1"])), "--seconds",
                 data.draw(st.sampled_from(["0.05", "0", "-1", "nan", "inf", "x"])), "--backend", "gymnasium"]
    flags = FLAGS.get(sub, {})
    for flag in data.draw(st.lists(st.sampled_from(sorted(flags)), max_size=5)) if flags else []:
        choices = flags[flag]
        argv += [flag] if choices is None else [flag, value(data.draw(st.sampled_from(choices)))]
    if sub == "bench" and data.draw(st.booleans()):
        argv = argv[: data.draw(st.integers(1, len(argv)))]
    argv += SAFE_TAIL.get(sub, [])  # argparse keeps the last value: no fuzzed run trains or evaluates for long
    cli_ok(argv)
    COUNTS["command_lines"] += 1
