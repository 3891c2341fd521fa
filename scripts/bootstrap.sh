#!/usr/bin/env bash
# Installs what both README commands need, idempotently: the virtualenv with pinned requirements,
# Azurite 3.35.0 under .tools/ (the last release that runs on Node 20), and, when root, Debian's
# chromium for the browser tests. Re-runs are cheap: each step is skipped when already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WANT_CHROMIUM="${1:-}"

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: Python 3.11+ is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
command -v node >/dev/null || { echo "bootstrap: Node.js 20+ is required for Azurite" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.requirements.sha"
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: installing Python requirements (the first time: a minute or two)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

if [ ! -x .tools/node_modules/.bin/azurite-table ]; then
  echo "bootstrap: installing Azurite 3.35.0 under .tools/"
  mkdir -p .tools
  (cd .tools && npm install --no-audit --no-fund --silent --no-save azurite@3.35.0)
fi

if [ "$WANT_CHROMIUM" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "bootstrap: installing Debian's chromium for the browser tests"
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; })
  else
    echo "bootstrap: /usr/bin/chromium is missing and this is not root: run 'sudo apt-get install chromium'" >&2
  fi
fi
