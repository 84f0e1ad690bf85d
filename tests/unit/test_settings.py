"""`Settings`: the one reader of Lifeline's environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lifeline import cli
from lifeline.rules import calendar, regions
from lifeline.settings import DEFAULT_PORTS, SERVICES, Settings, SettingsError
from lifeline.rules import policy

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_mode():
    s = Settings.from_env({})
    assert s.data_dir == Path("var").resolve()
    assert (s.kafka_bootstrap, s.redis_url, s.database_url) == ("127.0.0.1:19092", "redis://127.0.0.1:16379/0", "")
    assert s.ports == DEFAULT_PORTS and set(SERVICES) < set(s.ports)
    assert s.service_url("payment") == "http://127.0.0.1:8003"
    assert s.simulator_url == "http://127.0.0.1:8009"
    assert (s.environment, s.test_clock, s.republish_on_start) == ("development", False, False)


def test_the_shipped_operator_files_are_the_defaults():
    s = Settings.from_env({})
    assert s.policy_file == policy.DEFAULT_POLICY_FILE
    assert s.calendar_dir == calendar.DEFAULT_CALENDAR_DIR
    assert s.regions_dir == regions.DEFAULT_REGIONS_DIR


def test_a_given_mapping_is_read_and_os_environ_is_not(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFELINE_NAMESPACE", "from-os-environ.")
    monkeypatch.setenv("LIFELINE_PARTITIONS", "not a number")  # would fail if it were read
    s = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_PAYMENT_PORT": "9103",
                           "UNRELATED": "x"})
    assert s.namespace == "" and s.partitions == 3
    assert s.data_dir == tmp_path and s.ports["payment"] == 9103
    # Without a mapping, the process environment is read.
    monkeypatch.setenv("LIFELINE_PARTITIONS", "5")
    assert Settings.from_env().namespace == "from-os-environ." and Settings.from_env().partitions == 5


def test_an_empty_value_means_the_default():
    s = Settings.from_env({"LIFELINE_PARTITIONS": "", "LIFELINE_HOST": "", "LIFELINE_DATA_DIR": "",
                           "LIFELINE_TEST_CLOCK": "", "LIFELINE_ENVIRONMENT": "", "LIFELINE_LOG_LEVEL": ""})
    assert Settings.from_env({}) == s


def test_the_simulator_url_follows_host_and_port_unless_given():
    s = Settings.from_env({"LIFELINE_HOST": "10.0.0.7", "LIFELINE_SIMULATOR_PORT": "9999"})
    assert s.simulator_url == "http://10.0.0.7:9999"
    s = Settings.from_env({"LIFELINE_SIMULATOR_URL": "http://simulator:8009", "LIFELINE_HOST": "0.0.0.0"})
    assert s.simulator_url == "http://simulator:8009"


@pytest.mark.parametrize("name, value, expected", [
    ("LIFELINE_PARTITIONS", "three", "LIFELINE_PARTITIONS: Input should be a valid integer"),
    ("LIFELINE_INTAKE_PORT", "80x1", "LIFELINE_INTAKE_PORT: Input should be a valid integer"),
    ("LIFELINE_NOTIFY_PORT", "70000", "LIFELINE_NOTIFY_PORT: Input should be less than or equal to 65535"),
    ("LIFELINE_KAFKA_SESSION_TIMEOUT_MS", "0", "LIFELINE_KAFKA_SESSION_TIMEOUT_MS: Input should be greater"),
    ("LIFELINE_REPUBLISH_ON_START", "maybe", "LIFELINE_REPUBLISH_ON_START: Input should be a valid boolean"),
    ("LIFELINE_ENVIRONMENT", "staging", "LIFELINE_ENVIRONMENT: Input should be 'development' or 'production'"),
    ("LIFELINE_LOG_LEVEL", "loud", "LIFELINE_LOG_LEVEL: Input should be"),
])
def test_a_bad_value_is_refused_naming_the_variable(name, value, expected):
    with pytest.raises(SettingsError, match=expected) as refused:
        Settings.from_env({name: value})
    assert repr(value.upper() if name == "LIFELINE_LOG_LEVEL" else value) in str(refused.value)


def test_secrets_are_never_echoed():
    s = Settings.from_env({"LIFELINE_JWT_SECRET": "jwt-very-secret", "LIFELINE_CIPHER_KEY": "cipher-very-secret",
                           "LIFELINE_DATABASE_URL": "postgresql://u:pg-very-secret@h/db"})
    assert "very-secret" not in repr(s) and "very-secret" not in str(s)
    assert s.jwt_secret == "jwt-very-secret"


def test_the_test_clock_is_refused_in_production():
    with pytest.raises(SettingsError, match="LIFELINE_TEST_CLOCK=true is refused with LIFELINE_ENVIRONMENT=production"):
        Settings.from_env({"LIFELINE_TEST_CLOCK": "true", "LIFELINE_ENVIRONMENT": "production"})
    assert Settings.from_env({"LIFELINE_TEST_CLOCK": "true"}).test_clock
    production = {"LIFELINE_ENVIRONMENT": "production", "LIFELINE_CIPHER_KEY": "a secret"}
    assert Settings.from_env(production).environment == "production"


def test_production_needs_the_cipher_key_and_refuses_deliberate_faults():
    with pytest.raises(SettingsError, match="LIFELINE_CIPHER_KEY is required"):
        Settings.from_env({"LIFELINE_ENVIRONMENT": "production"})
    production = {"LIFELINE_ENVIRONMENT": "production", "LIFELINE_CIPHER_KEY": "a secret"}
    with pytest.raises(SettingsError, match="LIFELINE_FAULTS is refused"):
        Settings.from_env({**production, "LIFELINE_FAULTS": "relay_before_save:*"})
    # In development the key may be empty (sealing then uses a secret under the data dir).
    assert Settings.from_env({}).cipher_key == ""


@pytest.mark.parametrize("spec", ["x:y:z", ":Event", "a:b:c:d"])
def test_a_malformed_fault_spec_names_the_variable(spec):
    with pytest.raises(SettingsError, match="LIFELINE_FAULTS"):
        Settings.from_env({"LIFELINE_FAULTS": spec})
    assert Settings.from_env({"LIFELINE_FAULTS": "relay_after_send:ApplicationSubmitted:2"}).faults


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(ValueError):
        s.host = "0.0.0.0"  # type: ignore[misc]


def test_every_field_is_one_lifeline_variable():
    names = Settings.env_names()
    assert names["data_dir"] == "LIFELINE_DATA_DIR" and names["test_clock"] == "LIFELINE_TEST_CLOCK"
    assert all(env == "LIFELINE_" + field.upper() for field, env in names.items())


def test_the_command_line_refuses_bad_settings_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("LIFELINE_TEST_CLOCK", "1")
    monkeypatch.setenv("LIFELINE_ENVIRONMENT", "production")
    assert cli.main(["token", "--role", "clerk", "--region", "370502"]) == 2
    err = capsys.readouterr().err
    assert "lifeline token: invalid Lifeline settings" in err and "Traceback" not in err


def test_no_lifeline_variable_is_read_outside_settings():
    """Only lifeline/settings.py reads LIFELINE_* variables; the rest gets Settings (or values
    from it). Setting variables for a child process is fine."""
    reads = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*f?["']LIFELINE_""")
    offenders = []
    for root in ("lifeline", "services", "tests", "bench", "scripts"):
        for path in (REPO_ROOT / root).rglob("*.py"):
            if path == Path(__file__).resolve() or path == REPO_ROOT / "lifeline" / "settings.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if reads.search(line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_a_bad_operator_file_stops_serve_naming_file_and_line(tmp_path):
    (tmp_path / "2027.yaml").write_text("year: 2027\nholidays: [2026-05-01]\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "LIFELINE_CALENDAR_DIR": str(tmp_path),
           "LIFELINE_DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "serve", "intake"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert f"{tmp_path / '2027.yaml'}: holidays: 2026-05-01 is not in year 2027" in r.stderr


def _compose_env() -> dict[str, dict[str, str]]:
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return {name: {k: str(v) for k, v in svc["environment"].items()}
            for name, svc in compose["services"].items() if svc.get("image") == "lifeline:latest"}


@pytest.mark.parametrize("service", [*SERVICES, "simulator", "bank", "sms", "federation", "console"])
def test_docker_compose_runs_every_lifeline_process_in_production(service):
    env = _compose_env()[service]
    # Compose fills the secrets from the caller's environment (and refuses without them).
    env = {k: ("placeholder" if v.startswith("${") else v) for k, v in env.items()}
    s = Settings.from_env(env)
    assert s.environment == "production" and not s.test_clock and s.console_sign_in == "bearer"
    assert s.database_url.startswith("postgresql://")


def test_the_kubernetes_config_is_production():
    import yaml

    data: dict[str, str] = {}
    for doc in yaml.safe_load_all((REPO_ROOT / "deploy" / "k8s" / "config.yaml").read_text(encoding="utf-8")):
        data |= doc.get("data", {}) | doc.get("stringData", {})
    for manifest in [*SERVICES, "simulator", "bank-simulator", "sms-simulator", "federation-simulator", "console"]:
        text = (REPO_ROOT / "deploy" / "k8s" / f"{manifest}.yaml").read_text(encoding="utf-8")
        assert "name: lifeline-config" in text and "name: lifeline-secrets" in text, manifest
    s = Settings.from_env(data)
    assert s.environment == "production" and s.host == "0.0.0.0"
