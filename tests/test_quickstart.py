"""docs/quickstart.md: its five commands run as written, with a smaller budget and short videos."""

import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from policygen.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"
SMALL = {"--steps 100000": "--steps 1500", "sweep runs/ip --episodes 3": "sweep runs/ip --episodes 1"}


def quickstart_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/quickstart.md has no bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_quickstart_commands_run(capsys, tmp_path, monkeypatch):
    lines = quickstart_commands()
    assert len(lines) == 5 and lines[0] == "bash scripts/setup.sh && . .venv/bin/activate"
    assert (DOC.parent.parent / "scripts" / "setup.sh").exists()  # what set up the environment running this test
    monkeypatch.chdir(tmp_path)
    for line in lines[1:]:
        for big, small in SMALL.items():
            line = line.replace(big, small)
        argv = shlex.split(line)
        assert argv[0] == "policygen"
        if argv[1] == "render":
            argv += ["--max-steps", "15", "--size", "96x72"]
        code = main(argv[1:])
        assert code == 0, f"{line}: {capsys.readouterr().err}"
    assert (tmp_path / "runs" / "ip" / "sweep.png").exists() and (tmp_path / "policies" / "ip500.onnx").exists()
    with Image.open(tmp_path / "videos" / "ip.gif") as gif:
        assert gif.size == (3 * 96, 72) and gif.n_frames >= 2
