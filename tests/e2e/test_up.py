"""`lifeline up`: the embedded default from nothing but Python, and its restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from lifeline.dev.embedded import free_port
from tests.conftest import BACKEND, REPO_ROOT
from tests.e2e.conftest import new_people
from tests import logscan
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e
SERVICES = ("intake", "verification", "payment", "charity", "notify", "simulator", "bank", "sms", "federation",
            "console")


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    # The console's copy shows the admin token: 0600.
    out = open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
    proc = subprocess.Popen([sys.executable, "-m", "lifeline.cli", "up"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text()
        if "Press Ctrl-C" in text:
            return proc, re.search(r"export TOKEN=(\S+)", text).group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"lifeline up exited:\n{text}")
        time.sleep(0.3)
    raise TimeoutError(log.read_text())


def _apply_and_accept(url: dict[str, str], auth: dict[str, str]) -> str:
    """An application, accepted at once (受理: the 受理通知书 follows)."""
    r = httpx.post(url["intake"] + "/v1/applications", headers=auth,
                   json=household(new_people(1), "370502101001"))
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    r = httpx.post(url["intake"] + f"/v1/cases/{case_id}/acceptance", headers=auth,
                   json={"decision": "accept", "reason": "材料齐全，予以受理"})
    assert r.status_code == 200, r.text
    return case_id


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0


def _assert_private(data_dir: Path, running: bool) -> None:
    """The data dir and every directory in it 0700, every file 0600: stores (with their -wal and
    -shm files while running), secrets, keys, Redis's files and the logs, which may name cases."""
    modes = {}
    for path in data_dir.rglob("*"):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # gone while we looked (a snapshot renamed into place)
        modes[str(path.relative_to(data_dir))] = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode))
    wrong = {name: oct(mode) for name, (is_dir, mode) in modes.items() if mode != (0o700 if is_dir else 0o600)}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700 and not wrong, wrong
    # Not vacuous: the files that matter are among them.
    assert {"jwt.secret", "sealing.secret", "redis.secret", "intake.events.sqlite", "logs/intake.log",
            "keys/lifeline-intake.ed25519", "redis/redis.conf"} <= set(modes)
    if running:
        assert any(name.endswith("-wal") for name in modes) and any(name.endswith("-shm") for name in modes)


def _assert_no_secret_in_logs(data_dir: Path, env: dict[str, str]) -> None:
    secrets = logscan.secrets_of(data_dir, env)
    assert {"jwt.secret", "sealing.secret", "redis.secret", "lifeline-intake.ed25519 line 2"} <= set(secrets)
    files = logscan.log_files(data_dir)
    assert data_dir / "logs" / "intake.log" in files and data_dir / "redis" / "redis.log" in files
    assert not logscan.leaks(files, secrets)


def _redis_refuses_without_password(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"-NOAUTH")


@pytest.mark.skipif(BACKEND != "embedded",
                    reason="lifeline up is the embedded default")
def test_up_serves_everything_and_keeps_data_across_a_restart():
    # A data dir `lifeline up` makes itself (its modes are under test), in a private parent.
    root = Path(tempfile.mkdtemp(prefix="lifeline-up-"))
    data_dir = root / "var"
    redis_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update({
        "LIFELINE_DATA_DIR": str(data_dir),
        "LIFELINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LIFELINE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LIFELINE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "PYTHONPATH": str(REPO_ROOT),
    })
    logscan.register(data_dir, env)  # the second run's logs too, at the session's end
    ports = {name: free_port() for name in SERVICES}
    env.update({f"LIFELINE_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    proc, token = _start(env, root / "up-1.log")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        case_id = _apply_and_accept(url, auth)
        wait_for(lambda: httpx.get(url["notify"] + "/v1/notices", params={"case_id": case_id},
                                   headers=auth).json()["items"], what="acceptance notice")
        assert httpx.get(url["bank"] + "/readyz").json() == {"status": "ok"}  # the bank simulator too
        assert httpx.get(url["federation"] + "/readyz").json() == {"status": "ok"}  # and the federation's
        assert httpx.get(url["sms"] + "/readyz").json() == {"status": "ok"}  # and the SMS gateway's
        assert "登录" in httpx.get(url["console"] + "/signin").text  # and the operator console
        assert _redis_refuses_without_password(redis_port)
        _assert_private(data_dir, running=True)
    finally:
        _stop(proc)
    assert not any(httpx_alive(u) for u in url.values())
    _assert_private(data_dir, running=False)
    _assert_no_secret_in_logs(data_dir, env)

    # Restart: the memory-only broker is empty, the stores are not.
    proc, token = _start(env, root / "up-2.log")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        assert httpx.get(url["intake"] + f"/v1/cases/{case_id}", headers=auth).status_code == 200
        second = _apply_and_accept(url, auth)
        wait_for(lambda: httpx.get(url["notify"] + "/v1/notices", params={"case_id": second},
                                   headers=auth).json()["items"], what="notice after restart")
        time.sleep(1.0)
        # The relays republished the old log into the fresh broker; nothing doubled.
        notices = httpx.get(url["notify"] + "/v1/notices", params={"case_id": case_id}, headers=auth).json()
        assert len(notices["items"]) == 1
        metrics = httpx.get(url["notify"] + "/metrics").text
        assert 'outcome="duplicate"' in metrics

        # A process killed -9 is started again by `lifeline up` (a supervisor), the rest go on.
        verification = _child(proc.pid, "serve verification")
        os.kill(verification, signal.SIGKILL)
        wait_for(lambda: _child(proc.pid, "serve verification") not in (None, verification)
                 and httpx.get(url["verification"] + "/readyz").status_code == 200, timeout=90,
                 what="verification started again")
        third = _apply_and_accept(url, auth)
        wait_for(lambda: httpx.get(url["notify"] + "/v1/notices", params={"case_id": third},
                                   headers=auth).json()["items"], what="notice after the kill")
        assert proc.poll() is None
        assert "verification exited with -9; starting it again" in (root / "up-2.log").read_text()
    finally:
        _stop(proc)


def _child(parent: int, command: str) -> int | None:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", command], capture_output=True, text=True)
    pids = out.stdout.split()
    return int(pids[0]) if pids else None


def httpx_alive(base: str) -> bool:
    try:
        httpx.get(base + "/healthz", timeout=1)
        return True
    except httpx.HTTPError:
        return False
