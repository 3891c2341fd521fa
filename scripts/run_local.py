"""The README's run command: the whole system on this machine.

Starts Azurite (in memory, :10002) unless STORAGE_CONNECTION_STRING / STORAGE_TABLE_ENDPOINT name
a real store, the webhook app (:7071), the session host (:8000) and, unless OPENAI_BASE names a
real Realtime endpoint, the simulator (:8089) placing demo calls. Ctrl-C stops every child.
`--reload` restarts the two apps whenever a Python file under callplane/, function_app/ or
session_host/ changes (local development).
"""

from __future__ import annotations

import argparse
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
from simulator.azurite import Azurite, start_azurite  # noqa: E402
from simulator.server import client_urls  # noqa: E402

PY = sys.executable
COLOURS = {"azurite": "90", "function_app": "33", "session_host": "36", "simulator": "35"}
APPS = ("function_app", "session_host")
WATCHED = ("callplane", "function_app", "session_host")
# Local demo defaults: between them the demo calls end every way a call can end (completed,
# transferred to a human, rejected by the caller deny list).
DEMO_DEFAULTS = {
    "DEMO_CALLS": "4",
    "DEMO_SCENARIOS": "standard,handoff_human,blocked_caller,barge_in",
    "DEMO_INTERVAL": "10",
    "SIP_TARGET_URI": "tel:+15555550100",
    "CALLER_DENY": "+1900*",
}


def pump(name: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    tag = f"\033[{COLOURS.get(name, '0')}m{name:>12}\033[0m │ " if sys.stdout.isatty() else f"{name:>12} | "
    for raw in iter(proc.stdout.readline, b""):
        sys.stdout.write(tag + raw.decode(errors="replace"))
        sys.stdout.flush()


def environment() -> tuple[dict[str, str], bool, bool]:
    """The children's environment: `.env` read the way pydantic-settings reads it (python-dotenv),
    the process environment winning; then what a local run fills in. Also: real store? real Realtime?"""
    dotenv = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v}
    env = {**dotenv, **{k: v for k, v in os.environ.items() if v}}
    env.setdefault("LOG_FORMAT", "pretty")
    env.setdefault("SHUTDOWN_GRACE_SECONDS", "5")
    env["PYTHONUNBUFFERED"] = "1"
    real_store = bool(env.get("STORAGE_CONNECTION_STRING") or env.get("STORAGE_TABLE_ENDPOINT"))
    real_realtime = bool(env.get("OPENAI_BASE"))
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
        for key, value in DEMO_DEFAULTS.items():
            env.setdefault(key, value)
    return env, real_store, real_realtime


def commands(env: dict[str, str], real_realtime: bool) -> list[tuple[str, list[str]]]:
    found = [(name, [PY, "-m", name]) for name in APPS]
    if not real_realtime:
        found.append(
            (
                "simulator",
                [
                    PY,
                    "-m",
                    "simulator",
                    "--demo-calls",
                    env["DEMO_CALLS"],
                    "--scenario",
                    env["DEMO_SCENARIOS"],
                    "--demo-interval",
                    env["DEMO_INTERVAL"],
                ],
            )
        )
    return found


def start(name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own session: a terminal's Ctrl-C reaches only this script, which then stops the children
    # in order (apps first, so they flush to Azurite before it goes).
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    threading.Thread(target=pump, args=(name, proc), daemon=True).start()
    return proc


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def source_stamp() -> float:
    return max((p.stat().st_mtime for d in WATCHED for p in (ROOT / d).rglob("*.py")), default=0.0)


def supervise(
    children: dict[str, subprocess.Popen[bytes]],
    cmds: dict[str, list[str]],
    env: dict[str, str],
    stopping: threading.Event,
    reload: bool,
) -> None:
    stamp = source_stamp()
    while not stopping.is_set():
        if reload and (fresh := source_stamp()) != stamp:
            stamp = fresh
            print("source changed: restarting the apps", flush=True)
            stop_all([children[name] for name in APPS])
            for name in APPS:
                children[name] = start(name, cmds[name], env)
        for name, proc in children.items():
            if proc.poll() is not None and not (reload and name in APPS):
                print(f"{name} exited with {proc.returncode}; stopping", flush=True)
                stopping.set()
        stopping.wait(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reload", action="store_true", help="restart the apps when their Python source changes")
    args = parser.parse_args(argv)
    env, real_store, real_realtime = environment()
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    azurite: Azurite | None = None
    if not real_store:
        azurite = start_azurite(port=10002)
        env["STORAGE_CONNECTION_STRING"] = azurite.connection_string
        print("azurite (in memory: nothing survives a restart) on :10002", flush=True)
    cmds = dict(commands(env, real_realtime))
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in cmds.items():
            children[name] = start(name, cmd, env)
            time.sleep(0.8)
        print(
            f"\ndashboard: http://localhost:{env['PORT']}/dashboard   calls: http://localhost:{env['PORT']}/api/calls"
            f"   (Ctrl-C stops everything{'; --reload: watching the source' if args.reload else ''})\n",
            flush=True,
        )
        supervise(children, cmds, env, stopping, args.reload)
    finally:
        stop_all(list(children.values()))
        if azurite is not None:
            azurite.stop()
        print("stopped", flush=True)
    failed = [name for name, proc in children.items() if proc.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
