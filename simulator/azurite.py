"""Start the project's own Azurite (table service, in memory): for tests and the local run.

Azurite is the second local double beside the Realtime simulator; installed by scripts/bootstrap.sh."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    """A port free now, for a listener started soon after. Taken below the kernel's ephemeral
    range when there is one: a port from that range can be handed to an outgoing connection
    (a store client connecting) before the listener binds it."""
    floor = _ephemeral_floor()
    for _ in range(50) if floor > 12_000 else ():
        port = random.randrange(10_000, floor)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Azurite:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_azurite(port: int | None = None) -> Azurite:
    if not AZURITE.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE}; run scripts/test.sh (it installs it)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="azurite-")
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--inMemoryPersistence",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(port),
            "--skipApiVersionCheck",
            "--loose",
            "--disableProductStyleUrl",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
        env={**os.environ},
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Azurite(proc, port, workdir)
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("Azurite exited at start-up") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("Azurite did not open its port within 30 s")
