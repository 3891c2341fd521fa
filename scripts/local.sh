#!/usr/bin/env bash
# The README's run command: installs what it needs, then runs the whole system locally.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/run_local.py "$@"
