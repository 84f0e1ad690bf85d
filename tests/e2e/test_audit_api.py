"""The auditor's read API on every service (issue 15's auditor screen), across the separate
processes: a household submitted and accepted; its timeline read from intake and verification
with the auditor's token (who, role, office, in recorded order; fewer events as of a moment
before the acceptance), refused to a clerk and to an auditor of another county; every service's
hash chain verified over HTTP as `lifeline audit verify` does, the result reused on a refresh."""

from __future__ import annotations

import pytest

from lifeline.settings import SERVICES
from tests.e2e.conftest import make_poor, new_people
from tests.e2e.test_audit import now_between_steps
from tests.e2e.test_flows import submit
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

COUNTY = "370502"


def timeline(lifeline, service: str, case_id: str, role: str = "auditor", region: str = COUNTY, **params):
    with lifeline.client(service, role, region) as c:
        return c.get(f"/v1/audit/cases/{case_id}/events", params=params)


def test_a_case_timeline_per_service_and_each_log_verified(lifeline):
    people = new_people(2)
    make_poor(lifeline, people)
    case_id = submit(lifeline, people)
    before = now_between_steps()
    lifeline.accept(case_id)
    wait_for(lambda: lifeline.verification(case_id), what="verification knows the case")

    r = timeline(lifeline, "intake", case_id)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["service"] == "intake" and answer["case_id"] == case_id and not answer["truncated"]
    events = answer["events"]
    names = [e["event"] for e in events]
    assert names[0] == "Case.Submitted" and "Case.Accepted" in names, names
    assert [(e["recorded_at"], e["position"]) for e in events] == sorted((e["recorded_at"], e["position"])
                                                                         for e in events)
    [accepted] = [e for e in events if e["event"] == "Case.Accepted"]
    assert accepted["who"] == {"user_id": f"clerk@{COUNTY}", "role": "clerk", "office": COUNTY}
    assert accepted["why"] == "材料齐全，予以受理" and accepted["public_event"] == "ApplicationAccepted"

    then = timeline(lifeline, "intake", case_id, as_of=before.isoformat()).json()
    assert "Case.Accepted" not in [e["event"] for e in then["events"]]
    assert 0 < then["total"] < answer["total"] and then["as_of"]

    # Verification's own events of the case, caused by intake's published ones.
    found = wait_for(lambda: timeline(lifeline, "verification", case_id).json()["events"], what="its events")
    assert found[0]["event"] == "Verification.Started" and all(e["who"]["user_id"] for e in found)
    assert found[0]["causation_id"] == events[0]["cloudevent_id"] is not None
    assert timeline(lifeline, "verification", case_id, limit=1).json()["truncated"] == (len(found) > 1)

    # Only auditors (and admins), and only within their region.
    r = timeline(lifeline, "intake", case_id, role="clerk")
    assert r.status_code == 403 and r.json()["type"].endswith("/role-forbidden"), r.text
    r = timeline(lifeline, "intake", case_id, region="370503")
    assert r.status_code == 403 and r.json()["type"].endswith("/region-forbidden"), r.text
    assert timeline(lifeline, "intake", "C-NO-SUCH-CASE").status_code == 404

    for service in SERVICES:
        with lifeline.client(service, "auditor", COUNTY) as c:
            first = c.get("/v1/audit/verify")
            assert first.status_code == 200, first.text
            checked = first.json()
            assert checked["ok"] is True and checked["problems"] == [], checked["lines"]
            assert checked["service"] == service and checked["events"] > 0 and checked["head"]["position"] > 0
            assert checked["seals"]["source"] in ("kafka", "store") and checked["checked_at"]
            assert checked["lines"][-1] == f"{service}: OK: no event changed, removed or reordered"
            again = c.get("/v1/audit/verify").json()  # a refresh: the same check, not another read
            assert again["reused"] is True and again["checked_at"] == checked["checked_at"]
        with lifeline.client(service, "clerk", COUNTY) as c:
            assert c.get("/v1/audit/verify").status_code == 403
