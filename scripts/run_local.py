"""The README's run command: the whole system on this machine.

Starts Azurite (in memory, :10002) unless STORAGE_CONNECTION_STRING / STORAGE_TABLE_ENDPOINT name
a real store, the webhook app (:7071), the session host (:8000) and, unless OPENAI_BASE names a
real Realtime endpoint, the simulator (:8089) placing demo calls. Ctrl-C stops every child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dotenv import dotenv_values  # noqa: E402

from callplane.signing import new_secret  # noqa: E402
from simulator.azurite import start_azurite  # noqa: E402
from simulator.server import client_urls  # noqa: E402

PY = sys.executable
COLOURS = {"azurite": "90", "function_app": "33", "session_host": "36", "simulator": "35"}


def pump(name: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    tag = f"\033[{COLOURS.get(name, '0')}m{name:>12}\033[0m │ " if sys.stdout.isatty() else f"{name:>12} | "
    for raw in iter(proc.stdout.readline, b""):
        sys.stdout.write(tag + raw.decode(errors="replace"))
        sys.stdout.flush()


def main() -> int:
    # .env read the way pydantic-settings reads it (python-dotenv), the process environment winning.
    dotenv = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
    env = {**dotenv, **os.environ}
    env.setdefault("LOG_FORMAT", "pretty")
    env.setdefault("SHUTDOWN_GRACE_SECONDS", "5")
    env["PYTHONUNBUFFERED"] = "1"
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    azurite = None
    real_store = bool(env.get("STORAGE_CONNECTION_STRING") or env.get("STORAGE_TABLE_ENDPOINT"))
    real_realtime = bool(env.get("OPENAI_BASE"))
    if not real_store:
        azurite = start_azurite(port=10002)
        env["STORAGE_CONNECTION_STRING"] = azurite.connection_string
        print("azurite (in memory) on :10002", flush=True)
    sim_port = env.setdefault("SIMULATOR_PORT", "8089")
    fn_port = env.setdefault("FUNCTIONS_PORT", "7071")
    env.setdefault("PORT", "8000")
    env.setdefault("SESSION_HOST_URL", f"http://127.0.0.1:{env['PORT']}")
    env.setdefault("HANDOFF_SECRET", new_secret())
    if not real_realtime:
        dialect = env.setdefault("REALTIME_DIALECT", "openai")
        env["OPENAI_BASE"], env["REALTIME_WS_BASE"] = client_urls(sim_port, dialect)
        env.setdefault("OPENAI_API_KEY", "sk-local-simulator")
        env.setdefault("OPENAI_WEBHOOK_SECRET", new_secret())
        env.setdefault("SIMULATOR_WEBHOOK_URL", f"http://127.0.0.1:{fn_port}/openai/webhook")
    commands = [
        ("function_app", [PY, "-m", "function_app"]),
        ("session_host", [PY, "-m", "session_host"]),
    ]
    if not real_realtime:
        demo = env.get("DEMO_CALLS", "3")
        scenarios = env.get("DEMO_SCENARIOS", "standard")
        commands.append(("simulator", [PY, "-m", "simulator", "--demo-calls", demo, "--scenario", scenarios,
                                       "--demo-interval", env.get("DEMO_INTERVAL", "10")]))
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, cmd in commands:
            # Own session: a terminal's Ctrl-C reaches only this script, which then stops the children
            # in order (apps first, so they flush to Azurite before it goes).
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            children.append((name, proc))
            threading.Thread(target=pump, args=(name, proc), daemon=True).start()
            time.sleep(0.8)
        print(f"\ndashboard: http://localhost:{env['PORT']}/dashboard   calls: http://localhost:{env['PORT']}/api/calls"
              "   (Ctrl-C stops everything)\n", flush=True)
        while not stopping.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", flush=True)
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for _, proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in children:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if azurite is not None:
            azurite.stop()
    failed = [name for name, proc in children if proc.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
