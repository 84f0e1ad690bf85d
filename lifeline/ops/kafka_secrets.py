"""The secrets of an authenticated Kafka: a CA, the broker's TLS certificate, a password per
principal, and the broker settings that use them.

One source for both places a secured broker is configured: RealKafka (the real test pass, on
this machine) and `lifeline kafka-secrets --out DIR` (docker-compose.yml and deploy/k8s).

The broker has two listeners: SASL_SSL for every client (SCRAM-SHA-512 over TLS; the broker's
own inter-broker traffic too) and CONTROLLER, KRaft's controller listener, on loopback only
(one combined node) with SASL PLAIN for the broker's own principal, since Kafka cannot
authenticate a controller with SCRAM (its credentials live in the metadata the controller
serves). SCRAM users are added when the storage is formatted (``kafka-storage format
--add-scram``), so the broker never runs a moment without them.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lifeline.messaging.acls import ADMIN, BROKER, PRINCIPALS, PROCESS_PRINCIPALS, acl_script

MECHANISM = "SCRAM-SHA-512"
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
BROKER_PEM = "broker.pem"  # the broker's private key (PKCS#8) and certificate chain
PASSWORDS_FILE = "passwords.json"


def write_private(path: Path, data: bytes | str) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def kafka_cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes, no padding;
    # Kafka itself re-draws ids that start with "-".
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def new_password() -> str:
    # URL-safe characters only: it is written into JAAS strings and --add-scram arguments.
    return secrets.token_urlsafe(24)


def make_tls(out: Path, hosts: Iterable[str], days: int = 825) -> None:
    """A private CA (ca.pem, ca.key) and the broker's certificate for `hosts` (names or IP
    addresses, its subjectAltNames) signed by it, with the key, in broker.pem. EC P-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lifeline"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Lifeline Kafka CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lifeline"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, BROKER)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # The broker is a TLS server to clients and a TLS client of its own listener.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / CA_FILE).write_bytes(ca_cert.public_bytes(pem))
    (out / CA_FILE).chmod(0o644)  # a certificate, public: every client container reads it
    write_private(out / CA_KEY_FILE, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    write_private(out / BROKER_PEM, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
             + cert.public_bytes(pem) + ca_cert.public_bytes(pem))


@dataclass(frozen=True)
class KafkaSecrets:
    """A directory of them: ca.pem, ca.key, broker.pem and passwords.json (principal -> password)."""

    dir: Path
    passwords: Mapping[str, str]

    @property
    def ca_file(self) -> Path:
        return self.dir / CA_FILE

    @property
    def broker_pem(self) -> Path:
        return self.dir / BROKER_PEM

    def client_env(self, principal: str | None, protocol: str = "SASL_SSL", ca_file: str | None = None
                   ) -> dict[str, str]:
        """The LIFELINE_KAFKA_* variables of a process that is `principal` (None: one that does
        not talk Kafka, and gets no password)."""
        return {
            "LIFELINE_KAFKA_SECURITY_PROTOCOL": protocol,
            "LIFELINE_KAFKA_SASL_MECHANISM": MECHANISM,
            "LIFELINE_KAFKA_CA_FILE": ca_file or str(self.ca_file),
            "LIFELINE_KAFKA_USERNAME": principal or "",
            "LIFELINE_KAFKA_PASSWORD": self.passwords[principal] if principal else "",
        }

    def scram_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create every principal's SCRAM credentials."""
        args: list[str] = []
        for name, password in self.passwords.items():
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args


def ensure_secrets(directory: Path, hosts: Sequence[str], principals: Iterable[str] = PRINCIPALS) -> KafkaSecrets:
    """The secrets in `directory`, made the first time (a restarted broker keeps its users)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / PASSWORDS_FILE
    if not path.exists() or not (directory / BROKER_PEM).exists():
        make_tls(directory, hosts)
        write_private(path, json.dumps({p: new_password() for p in principals}, indent=1))
    return KafkaSecrets(directory, json.loads(path.read_text()))


def broker_properties(*, listen_host: str, port: int, advertised_host: str, controller_host: str,
                      controller_port: int, log_dirs: str, partitions: int,
                      secured: KafkaSecrets | None = None, keystore: str | None = None,
                      truststore: str | None = None) -> dict[str, str]:
    """server.properties of a single combined (broker + controller) KRaft node.

    `secured`: SASL_SSL with SCRAM and ACLs (StandardAuthorizer, deny unless granted); the
    keystore/truststore paths default to the secrets' own files (a container passes its
    mount paths). Without it: PLAINTEXT, no authorisation."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller_host}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": log_dirs,
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests start consumers constantly; the default 3 s delay only slows them.
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
    }
    if secured is None:
        return {
            **props,
            "listeners": f"PLAINTEXT://{listen_host}:{port},CONTROLLER://{controller_host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{advertised_host}:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        }
    password = secured.passwords[BROKER]
    return {
        **props,
        "listeners": f"SASL_SSL://{listen_host}:{port},CONTROLLER://{controller_host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{advertised_host}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER}" password="{password}";',
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER}" password="{password}" user_{BROKER}="{password}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": keystore or str(secured.broker_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": truststore or str(secured.ca_file),
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:{BROKER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def properties_text(props: Mapping[str, str]) -> str:
    # Java properties: a backslash escapes; none of ours has one, but ':' and '=' in values are fine.
    return "".join(f"{k}={v}\n" for k, v in props.items())


# --- `lifeline kafka-secrets --out DIR`: docker-compose.yml and deploy/k8s ------------------------
# Where the files are inside the containers (docker-compose.yml mounts them there).
BROKER_MOUNT = "/etc/lifeline-kafka"
CLIENT_CA = "/etc/lifeline-kafka/ca.pem"

_START = """#!/bin/sh
# The broker (apache/kafka image): format the storage once, with every principal's SCRAM
# credentials, then run. Generated by `lifeline kafka-secrets`.
set -eu
D={mount}
if [ ! -f {data}/meta.properties ]; then
  set --
  while IFS= read -r user; do set -- "$@" --add-scram "$user"; done < "$D/scram-users"
  /opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$(cat "$D/cluster.id")" \\
    -c "$D/server.properties" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$D/server.properties"
"""


def admin_client_properties(secured: KafkaSecrets, truststore: str) -> str:
    """--command-config of Kafka's own tools (kafka-acls.sh, kafka-topics.sh) as the admin."""
    return properties_text({
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                            f'username="{ADMIN}" password="{secured.passwords[ADMIN]}";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": truststore,
    })


def write_bundle(out: Path, *, hosts: Sequence[str], namespace: str, partitions: int,
                 consumes: Mapping[str, Sequence[str]], port: int = 9092,
                 data_dir: str = "/var/lib/kafka/data", broker_uid: int | None = None) -> KafkaSecrets:
    """Everything an authenticated Kafka of docker-compose.yml or deploy/k8s needs, in `out`:

    ca.pem, ca.key, broker.pem, passwords.json   the secrets (made once; delete `out` to rotate)
    <process>.env                               LIFELINE_KAFKA_* of each process, its own principal
                                                (intake ... notify, simulator, federation, admin)
    broker/                                     mounted into the Kafka container at /etc/lifeline-kafka:
                                                server.properties, broker.pem, ca.pem, scram-users,
                                                cluster.id, start.sh, admin.properties, acls.sh
                                                (0600, owned by `broker_uid` when given: the user the
                                                broker's container runs as)
    """
    secured = ensure_secrets(out, hosts)
    advertised = hosts[0]
    for process, principal in {**PROCESS_PRINCIPALS, "admin": ADMIN}.items():
        if principal is not None:
            env = secured.client_env(principal, ca_file=CLIENT_CA)
            write_private(out / f"{process}.env", "".join(f"{k}={v}\n" for k, v in env.items()))
    broker = out / "broker"
    broker.mkdir(exist_ok=True)
    broker.chmod(0o700)
    props = broker_properties(
        # The controller listener stays on the container's loopback: one combined node.
        listen_host="0.0.0.0", port=port, advertised_host=advertised, controller_host="localhost",
        controller_port=9093, log_dirs=data_dir, partitions=partitions, secured=secured,
        keystore=f"{BROKER_MOUNT}/{BROKER_PEM}", truststore=f"{BROKER_MOUNT}/{CA_FILE}")
    write_private(broker / "server.properties", properties_text(props))
    write_private(broker / BROKER_PEM, secured.broker_pem.read_bytes())
    (broker / CA_FILE).write_bytes(secured.ca_file.read_bytes())
    write_private(broker / "scram-users", "".join(
        f"{MECHANISM}=[name={name},password={password}]\n" for name, password in secured.passwords.items()))
    if not (broker / "cluster.id").exists():
        (broker / "cluster.id").write_text(kafka_cluster_id() + "\n")
    (broker / "start.sh").write_text(_START.format(mount=BROKER_MOUNT, data=data_dir))
    write_private(broker / "admin.properties",
                  admin_client_properties(secured, f"{BROKER_MOUNT}/{CA_FILE}"))
    (broker / "acls.sh").write_text(acl_script(namespace, consumes, partitions, bootstrap=f"localhost:{port}",
                                               command_config=f"{BROKER_MOUNT}/admin.properties"))
    if broker_uid is not None:
        for path in (broker, *broker.iterdir()):
            os.chown(path, broker_uid, broker_uid)
    return secured
