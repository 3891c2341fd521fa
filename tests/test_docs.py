"""The docs a newcomer follows: every relative link in README.md, ARCHITECTURE.md and docs/
resolves, and no code or doc leans on material outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_resolves() -> None:
    checked = 0
    for doc in doc_files():
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
            checked += 1
    assert checked >= 8, checked  # the README links the deploy guide, architecture, api, storage...


def test_readme_leads_to_azd_and_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "azd up" in readme
    for doc in ("docs/deploy.md", "ARCHITECTURE.md", "docs/storage.md", "docs/api.md", "docs/realtime.md"):
        assert f"]({doc})" in readme, doc


def test_nothing_cites_material_outside_the_repository() -> None:
    dirs = ["callplane", "session_host", "function_app", "simulator", "tests", "infra", "scripts", "docs"]
    # Spelled in pieces so this file does not match itself.
    pattern = r"\|".join(["DESIGN" + r"\.md", "sha" + "red/", "the se" + "ed", "2-co" + "re"])
    proc = subprocess.run(
        [
            "grep",
            "-rn",
            pattern,
            "--include=*.py",
            "--include=*.md",
            "--include=*.bicep",
            *dirs,
            "README.md",
            "ARCHITECTURE.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.stdout == "", proc.stdout
