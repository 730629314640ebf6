"""The README's Use section runs as written, in order, in a fresh folder (with its quick preset).

The commands are read from README.md's first ``bash`` block under "## Use" at test time, so the
README and this test cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def use_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Use\n") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md's Use section has no bash block"
    joined = block.group(1).replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_use_block_is_found():
    commands = use_commands()
    assert len(commands) >= 8
    assert all(c.startswith("egain ") for c in commands)


@pytest.mark.slow
def test_readme_use_section_runs_as_written(tmp_path):
    env = {**os.environ, "EGAIN_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(README.parent), env.get("PYTHONPATH")]))
    for command in use_commands():
        argv = shlex.split(command)
        proc = subprocess.run(
            [sys.executable, "-m", "egain", *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if argv[1:3] == ["gan", "fid"]:
            assert "warning" in proc.stderr  # 300 images: the sample-size warning is shown
    assert (tmp_path / "report").is_dir()
    assert (tmp_path / "out" / "bundled-egain" / "timing.json").exists()
