"""Run an azd hook with its own dependencies, on any machine azd runs on (Linux, macOS, Windows).

azd runs hooks with whatever `python3`/`python` is on the PATH, which has none of our packages.
This launcher needs only the standard library: it keeps a virtualenv for the hooks under
`.azure/hooks-venv` (azd's own folder, not committed), installs `infra/hooks/requirements.txt`
into it when that file changes, and runs the hook there.

    python3 infra/hooks/run.py preprovision       # what azure.yaml runs before provisioning
    python3 infra/hooks/run.py postprovision      # and after it
    python3 infra/hooks/run.py --check            # set up the venv and import the hook only
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REQUIREMENTS = HERE / "requirements.txt"
HOOKS = {"preprovision": HERE / "preprovision.py", "postprovision": HERE / "postprovision.py"}
NEEDS_PACKAGES = {"postprovision"}  # preprovision is standard library only: no venv, no wait


def venv_dir() -> Path:
    return Path(os.environ.get("HOOKS_VENV") or ROOT / ".azure" / "hooks-venv")


def venv_python(where: Path) -> Path:
    return where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    where = venv_dir()
    python = venv_python(where)
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = where / ".requirements.sha"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    if not python.exists():
        print(f"hooks: creating {where}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(where)
    print("hooks: installing the hooks' Python packages (first run: about a minute)", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(want)
    return python


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else ""
    if name in HOOKS and name not in NEEDS_PACKAGES:
        return subprocess.run([sys.executable, str(HOOKS[name]), *argv[2:]], check=False).returncode
    python = ensure_venv()
    if name == "--check":
        code = f"import azure.identity, azure.keyvault.secrets, runpy; runpy.run_path({str(HOOKS['postprovision'])!r})"
        return subprocess.run([str(python), "-c", code], check=False).returncode
    if name not in HOOKS:
        print(f"hooks: unknown hook {name!r} (known: {', '.join(HOOKS)})", file=sys.stderr)
        return 2
    return subprocess.run([str(python), str(HOOKS[name]), *argv[2:]], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
