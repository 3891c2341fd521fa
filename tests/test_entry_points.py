"""The README's run path, as processes: `python -m function_app`, `python -m session_host` and
`python -m simulator --demo-calls 1` on one Azurite; the call ends up at GET /api/calls, and
SIGTERM stops every process cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from callplane.http_server import LISTEN_BACKLOG
from simulator.azurite import free_port
from tests.stack import make_env

ROOT = Path(__file__).resolve().parent.parent


def get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def listen_backlog(port: int) -> int:
    """The accept-queue size of the socket listening on `port` (`ss` shows it as Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])


def test_three_processes_place_and_store_a_call(conn: str) -> None:
    sim_port, fn_port, host_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        **make_env(conn, sim_port=sim_port, fn_port=fn_port, host_port=host_port, dialect="azure"),
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
        "SIMULATOR_WEBHOOK_URL": f"http://127.0.0.1:{fn_port}/openai/webhook",
    }
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, args in (
            ("function_app", []),
            ("session_host", []),
            ("simulator", ["--demo-calls", "1", "--scenario", "greeting_only", "--time-scale", "10"]),
        ):
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", name, *args],
                cwd=ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 40
        calls: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            doc = get_json(f"http://127.0.0.1:{host_port}/api/calls")
            calls = list(doc["calls"]) if doc else []  # type: ignore[call-overload]
            if calls and calls[0]["status"] == "completed":
                break
            time.sleep(0.3)
        assert calls and calls[0]["status"] == "completed", calls
        assert get_json(f"http://127.0.0.1:{host_port}/healthz") == {"ok": True}
        # A burst of calls connects at once: each listener queues that many connections instead
        # of the kernel dropping SYNs past aiohttp's default of 128 (a one-second retry each).
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        for port in (fn_port, host_port, sim_port):
            assert listen_backlog(port) == min(LISTEN_BACKLOG, somaxconn), port
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        outputs = {name: proc.communicate(timeout=30)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode in (0, -signal.SIGTERM), (name, proc.returncode, outputs[name][-1500:])
    fn_log = [json.loads(line) for line in outputs["function_app"].splitlines() if line.startswith("{")]
    host_log = [json.loads(line) for line in outputs["session_host"].splitlines() if line.startswith("{")]
    messages = [e["msg"] for e in fn_log + host_log]
    for expected in (
        "webhook verified",
        "call accepted",
        "handed off",
        "control socket open",
        "ASSISTANT: Hi",
        "call record stored (completed)",
        "call summary",
        "webhook app listening",
        "webhook app stopped",
        "session host listening",
        "event loop: uvloop",  # the default
        "session host stopped",
    ):
        assert any(expected in m for m in messages), (expected, messages)
    assert [e["msg"] for e in host_log][-1] == "session host stopped", "the last line confirms the stop"
    assert [e["msg"] for e in fn_log][-1] == "webhook app stopped"
    assert "4255550123" not in outputs["function_app"] + outputs["session_host"]  # caller number redacted


async def test_the_webhook_app_starts_with_the_built_in_agents_accept_encoded(conn: str) -> None:
    """Its tool schemas take milliseconds to generate: done at start-up, not on a caller's accept."""
    from callplane.session_config import VoiceMode, accept_body
    from callplane.settings import Role, build_settings
    from callplane.telemetry import Telemetry
    from function_app.runtime import close_deps, open_deps

    settings = build_settings(Role.FUNCTION_APP, make_env(conn, sim_port=1, fn_port=2, host_port=3, dialect="azure"))
    deps = await open_deps(settings, Telemetry())
    try:
        [(key, body)] = deps.accept_bodies.items()
        assert key[0] is VoiceMode.AUDIO_OUTPUT and key[1] is None
        assert json.loads(body) == json.loads(json.dumps(accept_body(settings)))
    finally:
        await close_deps(deps)


def test_the_session_host_runs_on_the_loop_it_is_told_and_refuses_an_unknown_one(conn: str) -> None:
    """EVENT_LOOP=asyncio runs the standard loop (uvloop is the default, above); a loop it does
    not know stops it at start-up with the setting named, before it listens."""
    host_port = free_port()
    env = {
        **os.environ,
        **make_env(conn, sim_port=free_port(), fn_port=free_port(), host_port=host_port, dialect="azure"),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    bad = subprocess.run(
        [sys.executable, "-m", "session_host"],
        cwd=ROOT,
        env={**env, "EVENT_LOOP": "tokio"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "EVENT_LOOP" in bad.stderr, (bad.returncode, bad.stderr[-800:])
    proc = subprocess.Popen(
        [sys.executable, "-m", "session_host"],
        cwd=ROOT,
        env={**env, "EVENT_LOOP": "asyncio"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and get_json(f"http://127.0.0.1:{host_port}/healthz") is None:
            time.sleep(0.2)
        assert get_json(f"http://127.0.0.1:{host_port}/healthz") == {"ok": True}
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    lines = [json.loads(line)["msg"] for line in out.splitlines() if line.startswith("{")]
    assert any("event loop: asyncio" in m for m in lines), lines
    assert proc.returncode in (0, -signal.SIGTERM) and lines[-1] == "session host stopped"
