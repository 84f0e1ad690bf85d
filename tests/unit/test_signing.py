"""Signed events (lifeline/contracts/signing.py): who may speak for a source, and of what."""

from __future__ import annotations

import base64
import json
import stat
import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.signing import (
    EventRejected, KeyDirectory, PublicKeyRecord, Verifier, canonical, may_publish,
)
from lifeline.domain.clock import SystemClock

ACTOR = {"user_id": "reviewer-1", "role": "reviewer", "org_code": "370502"}


def approved(source: str = "lifeline/verification", sequence: int = 7) -> dict:
    """A BenefitApproved as it travels (the data need not pass its schema to be signed)."""
    return {"specversion": "1.0", "id": "7a0d1c52-5a57-4c43-9b7f-0d7c8f9a1e11", "source": source,
            "type": "cn.gov.mca.lifeline.BenefitApproved.v3", "subject": "C-1", "time": "2026-11-30T10:00:00+08:00",
            "datacontenttype": "application/json", "correlationid": "c-1", "actor": ACTOR, "sequence": sequence,
            "data": {"case_id": "C-1", "monthly_amount_fen": 98000, "applicant": "王小明"}}


@pytest.fixture
def keys(tmp_path) -> KeyDirectory:
    return KeyDirectory(tmp_path / "keys")


def rejected(verifier: Verifier, obj: dict) -> str:
    with pytest.raises(EventRejected) as info:
        verifier.check(obj)
    return info.value.reason


def test_a_signed_event_verifies_and_any_change_to_it_does_not(keys):
    signer = keys.signer("lifeline/verification", generate=True)
    verifier = Verifier(keys)
    signed = signer.sign(approved())
    verifier.check(signed)
    assert set(signed) - set(approved()) == {"keyid", "signature"}
    for change in ({"data": {**signed["data"], "monthly_amount_fen": 9_999_900}}, {"subject": "C-2"},
                   {"actor": {**ACTOR, "role": "clerk"}}, {"sequence": 8}, {"extra": "x"}):
        assert rejected(verifier, {**signed, **change}) == "signature: does not verify (changed or forged)", change
    assert rejected(verifier, approved()) == "signature: missing (the keyid and signature attributes)"
    assert rejected(verifier, {**signed, "signature": "not base64!"}) == "signature: not base64"


def test_a_key_speaks_only_for_its_own_source(keys):
    partner = keys.signer("partner/hrss", generate=True)
    keys.signer("lifeline/verification", generate=True)
    verifier = Verifier(keys)
    # A partner's key, its signature good, claiming to be verification.
    reason = rejected(verifier, partner.sign(approved()))
    assert reason == f"signature: key {partner.keyid} is not registered for the event's source"
    # In its own name, it may not publish a decision.
    reason = rejected(verifier, partner.sign(approved(source="partner/hrss")))
    assert reason == "source may not publish: partner/hrss may not publish BenefitApproved"
    # A key nobody registered, whatever its signature.
    stranger = Ed25519PrivateKey.generate()
    forged = {**approved(), "keyid": "lifeline-verification-0123456789ab"}
    forged["signature"] = base64.b64encode(stranger.sign(canonical(forged))).decode()
    assert rejected(verifier, forged) == "signature: unknown key lifeline-verification-0123456789ab"


@pytest.mark.parametrize(("source", "name", "allowed"), [
    ("lifeline/verification", "BenefitApproved", True),
    ("lifeline/intake", "BenefitApproved", False),
    ("lifeline/payment", "BenefitApproved", False),
    ("partner/hrss", "BenefitApproved", False),
    ("partner/hrss", "DepartmentRecordsReported", True),
    ("partner/public_security", "DeathReported", True),
    ("partner/medical_insurance", "LifeEventReported", True),
    ("partner/civil_affairs", "ReferralAnswered", True),
    ("partner/hrss", "VerificationRequested", False),
    ("lifeline/verification", "VerificationRequested", True),
    ("lifeline/intake", "DeadlineSet", True),
    ("lifeline/verification", "DeadlineSet", True),
    ("lifeline/notify", "DeadlineSet", False),
    ("lifeline/notify", "DeadlineBreached", True),
    ("lifeline/charity", "NeedFulfilled", True),
    ("lifeline/verification", "DepartmentRecordsReported", False),
    ("federation/x", "NeedAccepted", False),
])
def test_who_may_publish_what(source, name, allowed):
    assert may_publish(source, name) is allowed


def test_every_service_may_publish_its_own_events_and_its_log_seal():
    for service, topic in T.TOPICS.items():
        assert may_publish(f"lifeline/{service}", "LogSealed")
        for name, primary in T.EVENT_TOPIC.items():
            if primary == topic and name not in T.SHARED_EVENTS:
                assert may_publish(f"lifeline/{service}", name), (service, name)
                others = [s for s in T.TOPICS if s != service]
                assert not any(may_publish(f"lifeline/{o}", name) for o in others), name


def test_a_rotated_key_is_accepted_until_its_window_ends_and_the_new_one_signs(keys):
    old = keys.signer("lifeline/payment", generate=True)
    now = SystemClock().now()
    keys.generate("lifeline/payment", not_after_for_others=now + timedelta(days=7))
    new = keys.signer("lifeline/payment", generate=False)
    assert new.keyid != old.keyid
    event = {**approved(source="lifeline/payment"), "type": "cn.gov.mca.lifeline.PaymentSettled.v1"}
    during = Verifier(keys, now=lambda: now + timedelta(days=6))
    during.check(old.sign(event))
    during.check(new.sign(event))
    after = Verifier(keys, now=lambda: now + timedelta(days=8))
    after.check(new.sign(event))
    assert rejected(after, old.sign(event)).startswith(f"signature: key {old.keyid} expired at ")


def test_a_key_registered_after_the_verifier_started_is_found(keys):
    verifier = Verifier(keys)
    for source in ("lifeline/verification", "partner/hrss", "partner/tax"):  # started later, in a burst
        signer = keys.signer(source, generate=True)
        event = approved(source=source)
        if source.startswith("partner/"):
            event["type"] = "cn.gov.mca.lifeline.DepartmentRecordsReported.v1"
        verifier.check(signer.sign(event))


def test_processes_starting_together_agree_on_one_key_per_source(tmp_path):
    found: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        found.append(KeyDirectory(tmp_path / "keys").signer("lifeline/intake", generate=True).keyid)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1
    records = KeyDirectory(tmp_path / "keys").records()
    assert [r.keyid for r in records] == found[:1]


def test_keys_are_readable_by_their_owner_only(keys):
    keys.signer("lifeline/intake", generate=True)
    for path in (keys.path, keys.public_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in (keys.private_path("lifeline/intake"), *keys.public_dir.glob("*.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_partner_signs_with_a_standard_library_and_lifeline_verifies(keys):
    """What docs/SECURITY.md tells a department: Ed25519 over the sorted, compact JSON of the
    event without `signature`, base64 — nothing of Lifeline's code needed."""
    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    keys._ensure()
    (keys.public_dir / "partner-tax-2026.json").write_text(json.dumps(
        {"keyid": "partner-tax-2026", "source": "partner/tax", "public_key": public,
         "created_at": "2026-11-30T00:00:00+08:00", "not_after": None}))
    event = registry.new_event(
        "DepartmentRecordsReported",
        {"request_id": "Q-1", "case_id": "C-1", "department": "tax", "members": [],
         "reported_at": "2026-11-30T10:00:00+08:00"},
        subject="C-1", source="partner/tax", sequence=1, actor={"user_id": "a", "role": "partner", "org_code": "tax"},
    ).to_dict()
    event["keyid"] = "partner-tax-2026"
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    event["signature"] = base64.b64encode(private.sign(body)).decode()
    Verifier(keys).check(json.loads(json.dumps(event)))


def test_a_half_written_public_record_is_not_a_key(keys):
    keys._ensure()
    (keys.public_dir / "broken.json").write_text('{"keyid": "x"')
    assert keys.records() == []
    assert isinstance(keys.signer("lifeline/notify", generate=True), object)
    assert [r.source for r in keys.records()] == ["lifeline/notify"]
    assert all(isinstance(r, PublicKeyRecord) for r in keys.records())
