"""Who may do what on Kafka (lifeline/messaging/acls.py), how clients connect
(kafka_client_options) and what `lifeline kafka-secrets` writes. The broker enforcing them is
tests/integration/test_kafka_acl.py (real backend)."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509

from lifeline.cli import main
from lifeline.contracts import topics as T
from lifeline.errors import ConfigurationError
from lifeline.messaging import acls
from lifeline.messaging.kafka import kafka_client_options
from lifeline.ops import kafka_secrets
from lifeline.settings import SERVICES, Settings

CONSUMES = acls.lifeline_consumes()


def writes(principal: str, ns: str = "") -> set[str]:
    return {g.name for g in acls.grants(ns, CONSUMES) if g.principal == principal and g.operation == "write"}


def reads(principal: str, ns: str = "") -> set[str]:
    return {g.name for g in acls.grants(ns, CONSUMES)
            if g.principal == principal and g.operation == "read" and g.resource == "topic"}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_write_every_topic_its_events_go_to_and_no_other(service):
    published = {t for event in T._BY_SERVICE[service] for t in T.topics_for(event, service)}
    if service == "verification":
        published |= set(T.topics_for("VerificationRequested"))
    dead_letters = {T.dlq_topic(t, service) for t in CONSUMES[service]}
    assert writes(acls.service_principal(service)) == published | dead_letters
    assert reads(acls.service_principal(service)) == set(CONSUMES[service])


def test_partners_and_the_federation_get_only_their_feeds():
    for partner in (acls.PARTNER, acls.PARTNER_SIMULATOR):
        assert writes(partner) == {T.PARTNER_RECORDS} and reads(partner) == {T.PARTNER_REQUESTS}
    assert writes(acls.FEDERATION) == set() and reads(acls.FEDERATION) == {T.REFERRALS}
    assert T.TOPICS["verification"] not in writes(acls.PARTNER)


def test_grants_carry_the_namespace_and_name_topics_the_admin_creates():
    grants = acls.grants("t1.", CONSUMES)
    assert all(g.name.startswith("t1.") for g in grants)
    topics = set(acls.topics("t1.", CONSUMES))
    assert {g.name for g in grants if g.resource == "topic"} <= topics
    # Topic grants are exact names: a prefix would also cover another group's dead letters.
    assert {g.pattern for g in grants if g.resource == "topic"} == {"literal"}
    groups = {(g.principal, g.name) for g in grants if g.resource == "group"}
    assert ("lifeline-payment", "t1.payment") in groups and ("lifeline-payment", "t1.verification") not in groups


def test_client_options_follow_the_settings(tmp_path):
    plain = kafka_client_options(Settings.from_env({"LIFELINE_KAFKA_BOOTSTRAP": "h:1"}))
    assert plain == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}
    with pytest.raises(ConfigurationError, match="LIFELINE_KAFKA_USERNAME"):
        kafka_client_options(Settings.from_env({"LIFELINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}))
    kafka_secrets.make_tls(tmp_path, ["localhost"])
    settings = Settings.from_env({
        "LIFELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LIFELINE_KAFKA_USERNAME": "lifeline-intake",
        "LIFELINE_KAFKA_PASSWORD": "s3cret", "LIFELINE_KAFKA_CA_FILE": str(tmp_path / "ca.pem")})
    options = kafka_client_options(settings)
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "lifeline-intake")
    assert isinstance(options["ssl_context"], ssl.SSLContext) and options["ssl_context"].check_hostname
    assert "s3cret" not in repr(settings)


def test_kafka_secrets_writes_the_broker_and_each_process_its_own(tmp_path, capsys):
    out = tmp_path / "kafka"
    assert main(["kafka-secrets", "--out", str(out), "--hosts", "kafka,127.0.0.1", "--broker-uid",
                 str(out.parent.stat().st_uid)]) == 0
    passwords = kafka_secrets.ensure_secrets(out, ["unused"]).passwords
    assert set(passwords) == set(acls.PRINCIPALS) and len(set(passwords.values())) == len(passwords)
    for process in ("intake", "simulator", "federation", "admin"):
        env_file = out / f"{process}.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        principal = acls.ADMIN if process == "admin" else acls.PROCESS_PRINCIPALS[process]
        assert env["LIFELINE_KAFKA_USERNAME"] == principal and env["LIFELINE_KAFKA_PASSWORD"] == passwords[principal]
        assert env["LIFELINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert not (out / "bank.env").exists()  # it does not talk Kafka
    props = dict(line.split("=", 1) for line in (out / "broker" / "server.properties").read_text().splitlines())
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert "PLAINTEXT://" not in props["listeners"] and props["advertised.listeners"] == "SASL_SSL://kafka:9092"
    assert props["super.users"] == "User:lifeline-admin;User:kafka-broker"
    script = (out / "broker" / "acls.sh").read_text()
    assert script.count("kafka-acls.sh --bootstrap-server") == len(acls.grants("", CONSUMES))
    # The broker's certificate is the CA's, for the hosts asked.
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificates((out / "broker.pem").read_bytes())[0]
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kafka"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert stat.S_IMODE((out / "ca.key").stat().st_mode) == 0o600
    assert "lifeline kafka-setup" in capsys.readouterr().out
