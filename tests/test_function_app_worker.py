"""The Functions worker's view, in a fresh interpreter as the worker has: the root
function_app.py exists, `import function_app` gives the package with exactly one FunctionApp at
module level, and its indexed webhook function answers `azure.functions.HttpRequest`s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from callplane import signing

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, importlib, json, sys, time
from pathlib import Path
import azure.functions as func
from callplane import signing

module = importlib.import_module(Path("function_app.py").stem)   # what the worker does
apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
functions = apps[0].get_functions()
fn = next(f for f in functions if f.get_trigger().route == "openai/webhook")
handler = fn.get_user_function()
secret = sys.argv[1]

async def main():
    body = json.dumps({"type": "webhook.unknown", "id": "evt", "created_at": int(time.time()), "data": {}}).encode()
    out = {"apps": len(apps), "routes": [f.get_trigger().route for f in functions], "file": module.__file__}
    out["unsigned"] = (await handler(func.HttpRequest("POST", "http://h/openai/webhook", headers={}, body=body))).status_code
    signed = func.HttpRequest("POST", "http://h/openai/webhook", headers=signing.sign_headers(secret, body), body=body)
    resp = await handler(signed)
    out["signed"] = resp.status_code
    out["signed_body"] = json.loads(resp.get_body())
    big = func.HttpRequest("POST", "http://h/openai/webhook", headers={}, body=b"x" * (1024 * 1024 + 1))
    out["big"] = (await handler(big)).status_code
    print(json.dumps(out))

asyncio.run(main())
"""


def test_worker_imports_the_package_and_calls_the_webhook(conn: str) -> None:
    assert (ROOT / "function_app.py").is_file()
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    secret = signing.new_secret()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "k",
        "OPENAI_WEBHOOK_SECRET": secret,
        "HANDOFF_SECRET": signing.new_secret(),
        "SESSION_HOST_URL": "http://127.0.0.1:9",
        "STORAGE_CONNECTION_STRING": conn,
        "OPENAI_BASE": "http://127.0.0.1:9",
        "TABLE_PREFIX": "fnworker",
    }
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, secret], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["apps"] == 1
    assert out["routes"] == ["openai/webhook"]
    assert out["file"].endswith("function_app/__init__.py"), "the package must win over the root marker"
    assert out["unsigned"] == 401
    assert out["signed"] == 200 and out["signed_body"] == {"ignored": "webhook.unknown"}
    assert out["big"] == 413
