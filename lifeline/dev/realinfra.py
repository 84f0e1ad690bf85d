"""Real infrastructure on this machine, without Docker: Apache Kafka 4.1.1 (KRaft,
single node, jars from Maven Central), PostgreSQL and Redis from Debian packages.

Used by the `real` test backend (tests/conftest.py) and CI. Each class keeps its
state under a data dir, so restart() loses nothing: that is what distinguishes it
from the embedded Tansu broker, which is memory-only.

    python -m lifeline.dev.realinfra ensure-jars      # prefetch Kafka jars (CI)
    python -m lifeline.dev.realinfra up --data-dir D  # run all three, print env
        [--secure]                                    # Kafka with SASL_SSL and ACLs (as the admin)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lifeline.dev.embedded import (
    EmbeddedRedis,
    InfraError,
    ManagedProcess,
    free_port,
    kafka_metadata_ok,
    port_open,
)
from lifeline.messaging.acls import ADMIN
from lifeline.messaging.kafka import kafka_client_options
from lifeline.ops.kafka_secrets import (
    KafkaSecrets,
    broker_properties,
    ensure_secrets,
    kafka_cluster_id,
    properties_text,
    write_private,
)
from lifeline.settings import Settings

KAFKA_VERSION = "4.1.1"
# The jar that proves the download was Kafka and not something half-done.
_KAFKA_MAIN_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
_COMPLETE_MARKER = ".complete.json"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_POM = _REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def default_jars_dir() -> Path:
    """Where the jars are cached unless a caller names a directory (``Settings.kafka_jars_dir``)."""
    return Path.home() / ".cache" / "lifeline" / f"kafka-{KAFKA_VERSION}" / "libs"


def _jars_complete(jars_dir: Path) -> bool:
    marker = jars_dir / _COMPLETE_MARKER
    try:
        names = json.loads(marker.read_text())["jars"]
    except (OSError, ValueError, KeyError):
        return False
    return _KAFKA_MAIN_JAR in names and all((jars_dir / n).is_file() for n in names)


def ensure_jars(jars_dir: Path | None = None, quiet: bool = False) -> Path:
    """Make sure the Kafka jars are in jars_dir; fetch them with Maven if not.

    Maven writes into a sibling temp dir that is renamed into place, and a
    marker lists the jars, so an interrupted download is never mistaken for a
    complete one. A file lock serialises concurrent callers.
    """
    jars_dir = Path(jars_dir or default_jars_dir()).expanduser().resolve()
    if _jars_complete(jars_dir):
        return jars_dir
    jars_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(jars_dir.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(jars_dir):
            return jars_dir
        mvn = shutil.which("mvn")
        if not mvn:
            raise InfraError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install -y maven")
        if not _POM.is_file():
            raise InfraError(f"{_POM} is missing; run from a source checkout")
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=jars_dir.parent))
        try:
            if not quiet:
                print(f"fetching Kafka {KAFKA_VERSION} jars with Maven into {jars_dir} ...", file=sys.stderr)
            proc = subprocess.run(
                [mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}"],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise InfraError(
                    f"mvn dependency:copy-dependencies failed ({proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
            names = sorted(p.name for p in staging.glob("*.jar"))
            if _KAFKA_MAIN_JAR not in names:
                raise InfraError(f"Maven finished but {_KAFKA_MAIN_JAR} is not in {staging}")
            (staging / _COMPLETE_MARKER).write_text(json.dumps({"jars": names}, indent=1))
            if jars_dir.exists():
                shutil.rmtree(jars_dir)
            staging.rename(jars_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return jars_dir


def _load_ports(path: Path, wanted: dict[str, int | None]) -> dict[str, int]:
    """Reuse the ports recorded for a data dir, so a restarted cluster keeps its
    addresses (clients and Kafka's advertised listener stay valid)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    ports = {k: v or saved.get(k) or free_port() for k, v in wanted.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports))
    return ports


class RealKafka(ManagedProcess):
    """Apache Kafka 4.1.1, KRaft combined broker+controller, one node, on disk.

    `secure`: clients connect with SASL_SSL (SCRAM-SHA-512 over TLS) as one of the principals of
    lifeline/messaging/acls.py, and the broker allows only what their ACLs grant; the CA, the
    broker's certificate and every principal's password are made once under data_dir/secrets
    (lifeline/ops/kafka_secrets.py). Otherwise PLAINTEXT, anyone may do anything."""

    name = "kafka"
    start_timeout = 120.0  # JVM start on a 2-core box
    stop_timeout = 60.0  # controlled shutdown flushes the logs

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        controller_port: int | None = None,
        jars_dir: str | Path | None = None,
        partitions: int = 3,
        heap: str = "512m",
        secure: bool = False,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.secure = secure
        self.secrets: KafkaSecrets | None = None
        ports = _load_ports(self.data_dir / "ports.json", {"port": port, "controller_port": controller_port})
        self.controller_port = ports["controller_port"]
        self.jars_dir = Path(jars_dir).resolve() if jars_dir else None
        self.partitions = partitions
        self.heap = heap
        super().__init__(ports["port"], self.data_dir / "server.log")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "kafka-logs"

    def _java(self) -> str:
        home = os.environ.get("JAVA_HOME")
        java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
        if not java or not os.path.exists(java):
            raise InfraError("java not found (Java 17+ is needed for Kafka)")
        return java

    def _classpath(self) -> str:
        return str(self.jars_dir / "*")

    @property
    def security_protocol(self) -> str:
        return "SASL_SSL" if self.secure else "PLAINTEXT"

    def client_env(self, principal: str | None = ADMIN) -> dict[str, str]:
        """LIFELINE_KAFKA_* of a process connecting as `principal` (None: one that does not talk
        Kafka); nothing to add on a PLAINTEXT broker."""
        if not self.secure:
            return {}
        return self._secrets().client_env(principal)

    def _secrets(self) -> KafkaSecrets:
        if self.secrets is None:
            self.secrets = ensure_secrets(self.data_dir / "secrets", [self.host, "localhost"])
        return self.secrets

    def before_start(self) -> None:
        self.jars_dir = ensure_jars(self.jars_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self._secrets()
        self._write_configs()
        if port_open(self.host, self.controller_port, timeout=0.2):
            raise InfraError(f"kafka: controller port {self.controller_port} is already in use")
        if not (self.logs_dir / "meta.properties").exists():
            # Format once; later starts reuse the storage (that is the point of restart()).
            proc = subprocess.run(
                [self._java(), "-Xmx256m", "-cp", self._classpath(),
                 f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
                 f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                 "kafka.tools.StorageTool", "format", "--ignore-formatted",
                 "-t", kafka_cluster_id(), "-c", str(self.data_dir / "server.properties"),
                 *(self.secrets.scram_arguments() if self.secrets else ())],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise InfraError(f"kafka storage format failed:\n{proc.stdout}\n{proc.stderr}")

    def _write_configs(self) -> None:
        props = broker_properties(
            listen_host=self.host, port=self.port, advertised_host=self.host, controller_host=self.host,
            controller_port=self.controller_port, log_dirs=str(self.logs_dir), partitions=self.partitions,
            secured=self.secrets)
        # The broker's password is in it.
        write_private(self.data_dir / "server.properties", properties_text(props))
        log = self.data_dir / "kafka.log"
        # slf4j-reload4j routes Kafka's slf4j logging to log4j 1.x; a log4j2
        # config covers code that logs through log4j2 directly.
        (self.data_dir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={log}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.org.apache.kafka.clients=WARN\n"
            "log4j.logger.kafka.request.logger=WARN\n"
        )
        (self.data_dir / "log4j2.properties").write_text(
            "rootLogger.level=info\n"
            "rootLogger.appenderRef.f.ref=F\n"
            "appender.f.type=File\n"
            "appender.f.name=F\n"
            f"appender.f.fileName={log}\n"
            "appender.f.layout.type=PatternLayout\n"
            "appender.f.layout.pattern=[%d] %p %m (%c)%n\n"
        )

    def command(self) -> Sequence[str]:
        return [
            self._java(),
            f"-Xmx{self.heap}", f"-Xms{self.heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir}",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", self._classpath(),
            "kafka.Kafka", str(self.data_dir / "server.properties"),
        ]

    def is_ready(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        options = None
        if self.secure:
            options = kafka_client_options(Settings.from_env({"LIFELINE_KAFKA_BOOTSTRAP": self.bootstrap,
                                                              **self.client_env(ADMIN)}))
        return kafka_metadata_ok(self.bootstrap, timeout=5, options=options)

    def log_tail(self, lines: int = 40) -> str:
        # stdout/stderr (JVM errors) plus the broker's own log file.
        out = super().log_tail(lines)
        try:
            klog = (self.data_dir / "kafka.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            klog = []
        return out + ("\n--- kafka.log ---\n" + "\n".join(klog) if klog else "")

    def restart(self) -> "RealKafka":
        super().restart()
        return self


class RealRedis(EmbeddedRedis):
    """Debian's /usr/bin/redis-server, run like the embedded one but with ACL users as a
    deployment has them (lifeline.ops.redisauth): the default user off, ``lifeline-<service>``
    per service limited to its own keys in any namespace (tests share one Redis), and
    ``lifeline-admin`` (`url`) for the tests themselves."""

    user = "lifeline-admin"

    def __init__(self, port: int | None = None, data_dir: str | Path | None = None,
                 binary: str = "/usr/bin/redis-server"):
        from lifeline.ops.redisauth import new_password
        from lifeline.settings import SERVICES

        self.server_path = binary
        super().__init__(port, data_dir)
        self.passwords = {service: new_password() for service in SERVICES}

    @property
    def acl_path(self) -> Path:
        return self.config_path.with_name("users.acl")

    def config(self) -> list[str]:
        return [f"aclfile {self.acl_path}"]

    def url_for(self, service: str) -> str:
        from lifeline.ops.redisauth import user_of, with_credentials

        return with_credentials(self.url, self.passwords[service], user_of(service))

    def before_start(self) -> None:
        from lifeline.ops.redisauth import acl_file, write_private

        super().before_start()
        write_private(self.acl_path, acl_file(self.passwords, namespace="*", admin_password=self.password))

    def binary(self) -> str:
        if not os.path.exists(self.server_path):
            raise InfraError(f"{self.server_path} not found: apt-get install -y redis-server")
        return self.server_path


_PG_RUNNING: "set[RealPostgres]" = set()


@atexit.register
def _stop_postgres() -> None:
    # pg_ctl daemonises the server, so it is not our child: stop it explicitly.
    for pg in list(_PG_RUNNING):
        with contextlib.suppress(Exception):
            pg.stop()


class RealPostgres:
    """A private PostgreSQL cluster from the Debian binaries (initdb + pg_ctl).

    As root, the cluster is owned by and runs as the `postgres` user (the server
    refuses to run as root). Role and database `lifeline` (password `lifeline`)
    are created on first start; TCP connections need the password (scram), the
    private Unix socket is trusted for administration.
    """

    host = "127.0.0.1"
    user = password = database = "lifeline"

    def __init__(self, data_dir: str | Path, port: int | None = None, fast: bool = True,
                 bin_dir: str | Path | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = _load_ports(self.data_dir / "ports.json", {"port": port})["port"]
        # fsync off: tests kill processes, never the machine, and the OS page
        # cache survives a process kill; it makes commits much cheaper here.
        self.fast = fast
        self.bin_dir = Path(bin_dir) if bin_dir else self._find_bin_dir()
        self.pgdata = self.data_dir / "pgdata"
        self.sock_dir = self.data_dir / "sock"
        self.log_path = self.data_dir / "postgres.log"

    @staticmethod
    def _find_bin_dir() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                       key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
        if not found:
            raise InfraError("PostgreSQL binaries not found: apt-get install -y postgresql")
        return Path(found[-1]).parent

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    # --- running commands as the cluster owner ------------------------------
    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _run(self, args: Sequence[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        user = self._run_as()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if user:
            env["HOME"] = pwd.getpwnam(user).pw_dir
        proc = subprocess.run(list(args), capture_output=True, text=True, env=env, user=user,
                              cwd="/", timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise InfraError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                f"log tail:\n{self.log_tail()}"
            )
        return proc

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if not user:
            self.sock_dir.mkdir(exist_ok=True)
            return
        pw = pwd.getpwnam(user)
        # The postgres user must be able to reach its directories: every parent
        # needs search permission for "others" (mkdtemp and pytest make 0700 dirs).
        for parent in [self.data_dir, *self.data_dir.parents]:
            if parent.stat().st_uid == os.geteuid() and not parent.stat().st_mode & 0o001:
                if parent == self.data_dir:
                    parent.chmod(parent.stat().st_mode | 0o011)
                else:
                    raise InfraError(
                        f"{parent} is not searchable by user {user}; put the PostgreSQL "
                        f"data dir somewhere like /tmp or chmod o+x {parent}"
                    )
        for d in (self.sock_dir,):
            d.mkdir(exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        if self.log_path.exists():
            os.chown(self.log_path, pw.pw_uid, pw.pw_gid)
        else:
            self.log_path.touch()
            os.chown(self.log_path, pw.pw_uid, pw.pw_gid)
        if self.pgdata.exists():
            os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        user = self._run_as()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        pwfile = self.data_dir / "superuser.pw"
        pwfile.write_text(self.password + "\n")
        if user:
            pw = pwd.getpwnam(user)
            os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        try:
            self._run([str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                       "--auth-local=trust", "--auth-host=scram-sha-256",
                       f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        finally:
            pwfile.unlink(missing_ok=True)

    def _server_options(self) -> str:
        opts = [
            f"-p {self.port}",
            f"-c listen_addresses={self.host}",
            f"-c unix_socket_directories={self.sock_dir}",
            # Five services x several replicas x pools x parallel tests.
            "-c max_connections=300",
        ]
        if self.fast:
            opts += ["-c fsync=off", "-c full_page_writes=off"]
        return " ".join(opts)

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        return self._run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.pgdata)],
                         check=False).returncode == 0

    def start(self) -> "RealPostgres":
        self._prepare_dirs()
        self._initdb()
        if self.is_running():
            _PG_RUNNING.add(self)
            return self
        if port_open(self.host, self.port, timeout=0.2):
            raise InfraError(f"postgres: port {self.port} is already in use")
        self._run([str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", "90", "-D", str(self.pgdata),
                   "-l", str(self.log_path), "-o", self._server_options()])
        _PG_RUNNING.add(self)
        self._ensure_database()
        return self

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        admin = dict(host=str(self.sock_dir), port=self.port, user="postgres", dbname="postgres",
                     autocommit=True)
        with psycopg.connect(**admin) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)))

    def stop(self) -> None:
        _PG_RUNNING.discard(self)
        if not self.is_running():
            return
        # Fast shutdown: SIGTERM ("smart") would wait for every client to disconnect.
        self._run([str(self.bin_dir / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast",
                   "-D", str(self.pgdata)], check=False)
        if self.is_running():
            self._run([str(self.bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(self.pgdata)],
                      check=False)

    def restart(self) -> "RealPostgres":
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RealPostgres {self.host}:{self.port} {self.pgdata}>"


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifeline.dev.realinfra")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ensure-jars", help="download the Kafka jars into the cache if missing")
    p.add_argument("--jars-dir", type=Path, default=None)
    p = sub.add_parser("up", help="run Kafka, PostgreSQL and Redis until interrupted")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--secure", action="store_true",
                   help="Kafka with SASL_SSL, SCRAM principals and ACLs; prints the admin's environment "
                        "(lifeline kafka-setup creates a namespace's topics and ACLs)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.cmd == "ensure-jars":
        t0 = time.monotonic()
        path = ensure_jars(args.jars_dir or settings.kafka_jars_dir)
        print(f"Kafka {KAFKA_VERSION} jars ready in {path} ({time.monotonic() - t0:.1f}s)")
        return 0

    data = args.data_dir.resolve()
    kafka = RealKafka(data / "kafka", jars_dir=settings.kafka_jars_dir, secure=args.secure)
    pg = RealPostgres(data / "postgres")
    redis = RealRedis(data_dir=data / "redis")
    try:
        for svc in (pg, redis, kafka):
            svc.start()
        print(f"export LIFELINE_KAFKA_BOOTSTRAP={kafka.bootstrap}")
        if args.secure:
            # The password goes to a 0600 file, not to the terminal.
            admin_env = kafka.data_dir / "secrets" / "admin.env"
            write_private(admin_env, "".join(f"{k}={v}\n" for k, v in kafka.client_env().items()))
            print(f"set -a; . {admin_env}; set +a")
        print(f"export LIFELINE_DATABASE_URL={pg.url}")
        print(f"export LIFELINE_REDIS_URL={redis.url}", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on TERM too
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        kafka.stop()
        redis.stop()
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
