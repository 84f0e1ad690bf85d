"""Shared pieces of the benchmarks that run the whole embedded stack (`lifeline up`) as a new user
would, and drive it with the Go load generator (bench/loadgen): its environment on free ports, its
readiness, the load generator's build, a process's CPU time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lifeline.dev.embedded import free_port, wait_ready  # noqa: E402
from lifeline.settings import SERVICES  # noqa: E402

LOADGEN = REPO / "bench" / "loadgen"
PORTS = [*SERVICES, "simulator", "bank", "federation", "sms"]


def build_loadgen(out: Path) -> Path:
    binary = out / "loadgen"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=LOADGEN, check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    return binary


def stack_env(data_dir: Path, secret: str, namespace: str = "") -> dict[str, str]:
    env = {**os.environ, "LIFELINE_DATA_DIR": str(data_dir), "LIFELINE_JWT_SECRET": secret,
           "LIFELINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "LIFELINE_REDIS_URL": f"redis://:{secret}@127.0.0.1:{free_port()}/0", "LIFELINE_NAMESPACE": namespace,
           "LIFELINE_LOG_LEVEL": "WARNING"}
    env.update({f"LIFELINE_{name.upper()}_PORT": str(free_port()) for name in PORTS})
    return env


def stop_group(proc: subprocess.Popen | None, timeout: float = 60) -> None:
    """SIGTERM a process started with start_new_session (`lifeline up` and all it runs), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    wait_ready(url, proc, f"the process serving {url}", timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pid(up: subprocess.Popen, name: str) -> int:
    """The pid of `lifeline serve NAME` started by the `lifeline up` process `up`."""
    out = subprocess.run(["pgrep", "-P", str(up.pid), "-f", f"serve {name}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])
