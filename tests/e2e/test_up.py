"""`lifeline up`: the embedded default from nothing but Python, and its restart."""

from __future__ import annotations

import os
import re
import signal
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
from tests.harness import household, wait_for

pytestmark = pytest.mark.e2e
SERVICES = ("intake", "verification", "payment", "charity", "notify", "simulator", "bank", "sms", "federation")


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "w")
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


@pytest.mark.skipif(BACKEND != "embedded",
                    reason="lifeline up is the embedded default")
def test_up_serves_everything_and_keeps_data_across_a_restart():
    data_dir = Path(tempfile.mkdtemp(prefix="lifeline-up-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update({
        "LIFELINE_DATA_DIR": str(data_dir),
        "LIFELINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LIFELINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "LIFELINE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "PYTHONPATH": str(REPO_ROOT),
    })
    ports = {name: free_port() for name in SERVICES}
    env.update({f"LIFELINE_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    proc, token = _start(env, data_dir / "up-1.log")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        case_id = _apply_and_accept(url, auth)
        wait_for(lambda: httpx.get(url["notify"] + "/v1/notices", params={"case_id": case_id},
                                   headers=auth).json()["items"], what="acceptance notice")
        assert httpx.get(url["bank"] + "/readyz").json() == {"status": "ok"}  # the bank simulator too
        assert httpx.get(url["federation"] + "/readyz").json() == {"status": "ok"}  # and the federation's
        assert httpx.get(url["sms"] + "/readyz").json() == {"status": "ok"}  # and the SMS gateway's
    finally:
        _stop(proc)
    assert not any(httpx_alive(u) for u in url.values())

    # Restart: the memory-only broker is empty, the stores are not.
    proc, token = _start(env, data_dir / "up-2.log")
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
    finally:
        _stop(proc)


def httpx_alive(base: str) -> bool:
    try:
        httpx.get(base + "/healthz", timeout=1)
        return True
    except httpx.HTTPError:
        return False
