"""Kafka principals and ACLs: each process speaks for itself, and only where it may.

On real infrastructure every process authenticates (SASL/SCRAM-SHA-512 over TLS) as its own
principal, and the broker (StandardAuthorizer, ``allow.everyone.if.no.acl.found=false``) lets
it do only what these grants allow:

  lifeline-<service>          WRITE its own topic and the feeds it publishes (intake: referrals;
                              verification: partner requests and the credit feed) and the
                              dead-letter topic of each topic it consumes (``<topic>.dlq.<service>``);
                              READ the topics its SPEC.consumes lists, in its own consumer group
  lifeline-partner-simulator  WRITE lifeline.partner.records.v1, READ lifeline.partner.requests.v1
                              in group ``partner-simulator``
  partner                     partner departments: the same topics, in groups ``partner-*``
  federation                  READ lifeline.referrals.v1 only, in groups ``federation*``
  lifeline-admin              super user: creates the topics and these ACLs (``lifeline
                              kafka-setup``); the operator's tools (replay, audit) read as it

No principal but the admin may create a topic: the admin creates every topic beforehand
(:func:`topics`), so a service's own ``ensure_topics`` at start finds them and a typo'd name
cannot make a new one. Topic ACLs are LITERAL full names (a PREFIXED grant on
``lifeline.intake.v1`` would also cover ``lifeline.intake.v1.dlq.verification``, another
group's dead letters). Every name carries LIFELINE_NAMESPACE, so each test's random namespace
gets its own grants. WRITE and READ imply DESCRIBE (Kafka's rule), which metadata needs.
"""

from __future__ import annotations

import asyncio
import importlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request

from lifeline.contracts import topics as T
from lifeline.messaging.kafka import kafka_client_options
from lifeline.settings import SERVICES, Settings

ADMIN = "lifeline-admin"
# The broker's own principal (inter-broker and controller traffic); a super user too.
BROKER = "kafka-broker"
PARTNER_SIMULATOR = "lifeline-partner-simulator"
PARTNER = "partner"
FEDERATION = "federation"


def service_principal(service: str) -> str:
    return f"lifeline-{service}"


# Every SCRAM user the broker knows (the broker's own user too).
PRINCIPALS: tuple[str, ...] = (
    ADMIN, *(service_principal(s) for s in SERVICES), PARTNER_SIMULATOR, PARTNER, FEDERATION, BROKER)

# The Kafka principal of each process `lifeline` runs (`serve NAME` and the simulators): None for
# the bank and SMS gateway simulators, which do not talk Kafka.
PROCESS_PRINCIPALS: dict[str, str | None] = {
    **{s: service_principal(s) for s in SERVICES},
    "simulator": PARTNER_SIMULATOR, "federation": FEDERATION, "bank": None, "sms": None,
    "console": None,  # the operator console speaks HTTP to the services only
}

# Published by a service to a topic that is not its own and is not fan-out of one of its own
# events (topics.EXTRA_TOPICS): verification's requests to the departments.
_ALSO_WRITES: dict[str, tuple[str, ...]] = {"verification": (T.PARTNER_REQUESTS,)}


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL binding, any host."""

    principal: str
    resource: Literal["topic", "group"]
    name: str
    operation: Literal["read", "write"]
    pattern: Literal["literal", "prefixed"] = "literal"


def service_writes(service: str) -> tuple[str, ...]:
    """The topics a service publishes to: its own, the fan-out of its events, and the rest."""
    own = T.TOPICS[service]
    fan_out = [t for event, extra in T.EXTRA_TOPICS.items() if T.EVENT_TOPIC[event] == own for t in extra]
    return tuple(dict.fromkeys([own, *fan_out, *_ALSO_WRITES.get(service, ())]))


def lifeline_consumes() -> dict[str, list[str]]:
    """What each service consumes, from its composition root (services/<name>/bootstrap.py)."""
    return {s: list(importlib.import_module(f"services.{s}.bootstrap").SPEC.consumes) for s in SERVICES}


def topics(namespace: str, consumes: Mapping[str, Sequence[str]]) -> list[str]:
    """Every topic of one Lifeline, which the admin creates: SPEC §3's and each consumer
    group's dead-letter topics."""
    names = [*T.ALL_TOPICS, *(T.dlq_topic(t, s) for s, ts in consumes.items() for t in ts)]
    return [namespace + n for n in dict.fromkeys(names)]


def grants(namespace: str, consumes: Mapping[str, Sequence[str]]) -> list[Grant]:
    """The ACLs of one Lifeline (its namespace), as the module docstring tells."""
    ns = namespace
    out: list[Grant] = []
    for service in SERVICES:
        who = service_principal(service)
        out += [Grant(who, "topic", ns + t, "write") for t in service_writes(service)]
        for topic in consumes.get(service, ()):
            out.append(Grant(who, "topic", ns + topic, "read"))
            out.append(Grant(who, "topic", ns + T.dlq_topic(topic, service), "write"))
        out.append(Grant(who, "group", ns + service, "read"))
    for who, group, pattern in ((PARTNER_SIMULATOR, "partner-simulator", "literal"),
                                (PARTNER, "partner-", "prefixed")):
        out += [Grant(who, "topic", ns + T.PARTNER_RECORDS, "write"),
                Grant(who, "topic", ns + T.PARTNER_REQUESTS, "read"),
                Grant(who, "group", ns + group, "read", pattern)]
    out += [Grant(FEDERATION, "topic", ns + T.REFERRALS, "read"),
            Grant(FEDERATION, "group", ns + "federation", "read", "prefixed")]
    return out


# --- applying them (as the admin) ----------------------------------------------------------------
# Kafka's wire codes (org.apache.kafka.common.resource / acl).
_RESOURCE = {"topic": 2, "group": 3}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"read": 3, "write": 4}
_ALLOW = 3


async def apply(settings: Settings, consumes: Mapping[str, Sequence[str]] | None = None) -> tuple[int, int]:
    """Create the topics and ACLs of the Lifeline in `settings.namespace`, connected as the admin
    (`settings` carries lifeline-admin's credentials), and wait until the broker enforces them.
    Idempotent. Answers (topics created, ACL bindings)."""
    consumes = lifeline_consumes() if consumes is None else consumes
    options = kafka_client_options(settings)
    bindings = grants(settings.namespace, consumes)

    async def create_topics() -> int:
        admin = AIOKafkaAdminClient(**options, client_id="lifeline-kafka-setup")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics(settings.namespace, consumes) if t not in existing]
            if missing:
                answer = await admin.create_topics([NewTopic(t, settings.partitions, 1) for t in missing])
                failed = [(name, code) for name, code, *_ in answer.topic_errors if code not in (0, 36)]
                if failed:
                    raise RuntimeError(f"creating topics failed (name, Kafka error code): {failed}")
            return len(missing)
        finally:
            await admin.close()

    async def create_acls() -> None:
        client = AIOKafkaClient(**options, client_id="lifeline-kafka-setup")
        await client.bootstrap()
        try:
            answer = await client.send(client.get_random_node(), _CreateAcls(bindings))
            failed = [(g, code, message) for g, (code, message) in zip(bindings, answer.creation_responses)
                      if code != 0]
            if failed:
                raise RuntimeError(f"creating ACLs failed: {failed[:5]}")
            await _until_in_force(client, bindings)
        finally:
            await client.close()

    # Both at once: each waits on the controller's commit and the broker catching up.
    created, _ = await asyncio.gather(create_topics(), create_acls())
    return created, len(bindings)


async def _until_in_force(client: AIOKafkaClient, bindings: Sequence[Grant], timeout: float = 30.0) -> None:
    """Wait until the broker's authorizer knows every binding: CreateAcls answers once the
    controller has committed them, and the broker applies them a moment (up to seconds) later."""
    node = client.get_random_node()

    async def known(g: Grant) -> bool:
        answer = await client.send(node, DescribeAclsRequest(
            _RESOURCE[g.resource], g.name, _PATTERN[g.pattern], f"User:{g.principal}", "*",
            _OPERATION[g.operation], _ALLOW))
        return bool(answer.resources)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(bindings)
    while pending:
        found = await asyncio.gather(*(known(g) for g in pending))
        pending = [g for g, ok in zip(pending, found) if not ok]
        if pending and loop.time() > deadline:
            raise TimeoutError(f"the broker does not apply {len(pending)} ACLs, e.g. {pending[0]}")
        if pending:
            await asyncio.sleep(0.05)


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """Many bindings in one CreateAcls request (aiokafka's own carries one)."""

    API_KEY = 30

    def __init__(self, bindings: Iterable[Grant]):
        self.creations = [
            (_RESOURCE[g.resource], g.name, _PATTERN[g.pattern], f"User:{g.principal}", "*",
             _OPERATION[g.operation], _ALLOW)
            for g in bindings
        ]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.creations)


# --- the same, as commands for an operator's own Kafka tools -----------------------------------
def acl_script(namespace: str, consumes: Mapping[str, Sequence[str]], partitions: int = 3,
               bootstrap: str = "kafka:9092", command_config: str = "admin.properties") -> str:
    """A shell script with kafka-topics.sh and kafka-acls.sh that does what :func:`apply` does
    (for a Kafka that `lifeline kafka-setup` cannot reach, e.g. one an operator manages)."""
    q = shlex.quote
    head = [
        "#!/bin/sh",
        "# Topics and ACLs of one Lifeline (generated by `lifeline kafka-secrets`; the same grants",
        "# as `lifeline kafka-setup`, see lifeline/messaging/acls.py), with Kafka's own tools.",
        "set -eu",
        'PATH="${KAFKA_BIN:-/opt/kafka/bin}:$PATH"',
        f'BOOTSTRAP="${{BOOTSTRAP:-{bootstrap}}}"',
        f'CONFIG="${{CONFIG:-{command_config}}}"',
    ]
    lines = [f'kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --command-config "$CONFIG" --create '
             f"--if-not-exists --topic {q(t)} --partitions {partitions} --replication-factor 1"
             for t in topics(namespace, consumes)]
    for g in grants(namespace, consumes):
        lines.append(
            f'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$CONFIG" --add '
            f"--allow-principal {q('User:' + g.principal)} --operation {g.operation.capitalize()} "
            f"--{g.resource} {q(g.name)} --resource-pattern-type {g.pattern}")
    return "\n".join(head + lines) + "\n"
