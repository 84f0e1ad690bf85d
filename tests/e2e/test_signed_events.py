"""Only Lifeline's own services can say what Lifeline decided (issue 16), across processes and on
both backends: a real BenefitApproved copied from the topic, changed and produced back is
dead-lettered by payment for its signature and opens no entitlement; a partner's key, its
signature good, claiming a decision is dead-lettered because the source may not publish it; the
original event produced again (its signature valid) has no second effect.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from tests.e2e.test_delivery import _produce, _read_all
from tests.e2e.test_flows import approved_case, items, metric
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

VERIFICATION = T.TOPICS["verification"]


def the_approval(lifeline, case_id: str) -> bytes:
    """The BenefitApproved verification published for the case, as it is on the topic."""
    for raw in lifeline.published():
        event = json.loads(raw)
        if event["type"].startswith("cn.gov.mca.lifeline.BenefitApproved.") and event["subject"] == case_id:
            return raw
    raise AssertionError(f"no BenefitApproved for {case_id} on the topics yet")


def forged_from(original: bytes) -> tuple[dict, str]:
    """The approval of another (non-existent) case for 99,999 yuan a month, signature kept."""
    event = json.loads(original)
    fake_case = f"C-FAKE{uuid.uuid4().hex[:10].upper()}"
    event.update(id=str(uuid.uuid4()), subject=fake_case, sequence=event["sequence"] + 10**9)
    event["data"].update(case_id=fake_case, benefit_id=f"B-{fake_case}", monthly_amount_fen=9_999_900)
    return event, fake_case


def dead_letters(lifeline, expect: int) -> list[tuple[str, bytes]]:
    dlq = T.dlq_topic(VERIFICATION, "payment")
    return [(dict(m.headers)["dlq.reason"].decode(), m.value)
            for m in asyncio.run(_read_all(lifeline, dlq, expect=expect, timeout=40))]


def test_a_forged_or_unpermitted_decision_has_no_effect_and_a_replayed_one_none_twice(lifeline):
    case_id = approved_case(lifeline)
    original = wait_for(lambda: the_approval(lifeline, case_id), what="the approval on the topic")
    assert json.loads(original)["keyid"].startswith("lifeline-verification-")
    wait_for(lambda: items(lifeline, "payment", "/v1/entitlements", case_id), what="the real entitlement")

    # 1. Copied, changed, produced back with its old signature (the forgery the issue tried).
    forged, fake_case = forged_from(original)
    # 2. A partner's own key, its signature good, claiming a decision in its own name.
    claimed, claimed_case = forged_from(original)
    claimed.update(source="partner/hrss", actor={"user_id": "adapter:hrss", "role": "partner", "org_code": "hrss"})
    claimed = json.loads(lifeline.signed({k: v for k, v in claimed.items() if k not in ("keyid", "signature")}))
    registry.decode(json.dumps(claimed).encode())  # a well-formed event: only who sent it is wrong
    duplicates = metric(lifeline, "payment", "lifeline_events_consumed_total", event="BenefitApproved",
                        outcome="duplicate")
    # 3. The genuine event again (a replay: its signature is valid).
    asyncio.run(_produce(lifeline, VERIFICATION, [json.dumps(forged).encode(), json.dumps(claimed).encode(),
                                                  original], key=case_id))

    reasons = dict((json.loads(value)["subject"], reason) for reason, value in dead_letters(lifeline, 2))
    assert reasons == {fake_case: "signature: does not verify (changed or forged)",
                       claimed_case: "source may not publish: partner/hrss may not publish BenefitApproved"}
    wait_for(lambda: metric(lifeline, "payment", "lifeline_events_consumed_total", event="BenefitApproved",
                            outcome="duplicate") >= duplicates + 1, what="the replay recognised")
    for case in (fake_case, claimed_case):
        assert items(lifeline, "payment", "/v1/entitlements", case) == []
    assert len(items(lifeline, "payment", "/v1/entitlements", case_id)) == 1
