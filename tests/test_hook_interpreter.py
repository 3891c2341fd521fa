"""The azd hooks run under the interpreter azure.yaml names (the system Python, not our .venv),
on both shells, and that interpreter gets the hooks' dependencies by itself."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def hook_commands() -> dict[str, list[str]]:
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    hook = doc["hooks"]["postprovision"]
    assert set(hook) == {"posix", "windows"}, "a hook for each shell azd knows"
    return {shell: shlex.split(hook[shell]["run"]) for shell in hook}


def test_both_shells_run_the_same_launcher() -> None:
    commands = hook_commands()
    assert commands["posix"][1:] == commands["windows"][1:] == ["infra/hooks/run.py", "postprovision"]
    assert commands["posix"][0] == "python3" and commands["windows"][0] == "python"


def test_the_named_interpreter_gets_the_hooks_dependencies(tmp_path: Path) -> None:
    interpreter = shutil.which(hook_commands()["posix"][0])
    assert interpreter, "python3 on the PATH"
    assert Path(interpreter).resolve() != (ROOT / ".venv" / "bin" / "python").resolve()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["HOOKS_VENV"] = str(tmp_path / "hooks-venv")
    proc = subprocess.run(
        [interpreter, "infra/hooks/run.py", "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "hooks-venv" / ".requirements.sha").exists()
    again = subprocess.run(
        [interpreter, "infra/hooks/run.py", "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "installing" not in again.stdout, "the second run reuses the venv"
