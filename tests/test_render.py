"""``policygen render``: valid GIF/MP4 files with the expected number of frames; bad paths refused."""

import json

import pytest
from PIL import Image

from policygen.cli import main


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_side_by_side_gif_of_several_commands(capsys, tmp_path, tiny_run):
    out = tmp_path / "new" / "side.gif"
    code, stdout, err = _cli(capsys, "render", tiny_run("gogepo"), "--commands", "5,40", "--episodes", "2",
                             "--max-steps", "12", "--size", "64x48", "--out", out)
    assert code == 0, err
    res = json.loads(stdout)
    per_panel = [sum(n + 1 for n in p["lengths"]) for p in res["panels"]]
    assert [p["label"] for p in res["panels"]] == ["command 5", "command 40"]
    assert all(len(p["lengths"]) == 2 and max(p["lengths"]) <= 12 for p in res["panels"])
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (128, 48)
        assert gif.n_frames == max(per_panel) == res["frames"]


def test_mp4_of_an_exported_policy_file(capsys, tmp_path, tiny_run):
    policy = tmp_path / "p.onnx"
    assert _cli(capsys, "generate", tiny_run("udrlpg"), "--command", "10", "--out", policy)[0] == 0
    out = tmp_path / "p.mp4"
    code, stdout, err = _cli(capsys, "render", policy, "--max-steps", "20", "--size", "64x64", "--out", out)
    assert code == 0, err
    res = json.loads(stdout)
    frames = _mp4_frames(out)
    assert frames == res["frames"] == res["panels"][0]["lengths"][0] + 1
    assert res["panels"][0]["label"] == "command 10"


def _mp4_frames(path) -> int:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as r:
        return sum(1 for _ in r)


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/v.avi"], "unknown video extension '.avi'; use one of ['.gif', '.mp4']"),
    (["--out", "{tmp}/exists.gif"], "exists; pass --force to overwrite it"),
    (["--out", "{tmp}/v.gif", "--size", "big"], "--size takes WIDTHxHEIGHT"),
    (["--out", "{tmp}/v.gif", "--commands", "1,x"], "--commands takes numbers separated by commas"),
])
def test_bad_render_input_is_one_clear_line(capsys, tmp_path, tiny_run, args, message):
    (tmp_path / "exists.gif").write_bytes(b"GIF89a")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = _cli(capsys, "render", tiny_run("gogepo"), *argv)
    assert code == 2 and err.startswith("policygen: error: ") and message in err and err.count("\n") == 1
    assert (tmp_path / "exists.gif").read_bytes() == b"GIF89a"
