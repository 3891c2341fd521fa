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


def hook_commands(name: str = "postprovision") -> dict[str, list[str]]:
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    hook = doc["hooks"][name]
    assert set(hook) == {"posix", "windows"}, "a hook for each shell azd knows"
    return {shell: shlex.split(hook[shell]["run"]) for shell in hook}


@pytest.mark.parametrize("name", ["preprovision", "postprovision"])
def test_both_shells_run_the_same_launcher(name: str) -> None:
    commands = hook_commands(name)
    assert commands["posix"][1:] == commands["windows"][1:] == ["infra/hooks/run.py", name]
    assert commands["posix"][0] == "python3" and commands["windows"][0] == "python"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_RESOURCE_NAME": "r"}, None),
        ({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/"}, "AZURE_OPENAI_RESOURCE_NAME is empty"),
        ({"AZURE_OPENAI_ENDPOINT": "r.openai.azure.com", "AZURE_OPENAI_RESOURCE_NAME": "r"}, "https endpoint"),
        (
            {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/openai", "AZURE_OPENAI_RESOURCE_NAME": "r"},
            "without a path",
        ),
        ({"REALTIME_DIALECT": "openai"}, "native OpenAI needs an API key"),
        ({"REALTIME_DIALECT": "openai", "USE_OPENAI_KEY": "true", "AZURE_OPENAI_API_KEY": "sk"}, None),
        ({"REALTIME_DIALECT": "gcp"}, "use azure"),
    ],
)
def test_preprovision_refuses_settings_that_cannot_work(env: dict[str, str], expected: str | None) -> None:
    interpreter = shutil.which(hook_commands("preprovision")["posix"][0])
    assert interpreter
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "REALTIME_", "USE_OPENAI"))}
    proc = subprocess.run(
        [interpreter, "infra/hooks/run.py", "preprovision"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if expected is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 1 and expected in proc.stderr, proc.stderr


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
