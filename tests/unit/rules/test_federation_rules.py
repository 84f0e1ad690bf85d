"""The federation feed's rules (docs/RULES.md §9): what is published, what the federation sees,
how deliveries are signed and retried, and what the federation's feedback may change.

Needs are opened from ReferralRaised events by charity's own consumer code, in an event store in
memory; the read models are charity's (application.project), caught up as the service does.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.stores.projection import Projection, compare, rebuild
from lifeline.stores.sidestore import SideStore
from services.charity.application import CharityApplication, project
from services.charity.domain import Need, NeedRuleViolation
from services.charity.federation import accept_need, fulfil_need, publish_uncovered
from services.charity.webhooks import (
    FEED_ITEM,
    backoff_seconds,
    body_of,
    check_url,
    new_secret,
    secret_key,
    sign,
    signed_headers,
)
from tests.unit.services import MEMORY_ENV, cloud, new_case_id

NOW = "2026-11-25T09:00:00+08:00"
VILLAGE = "370502101001"
FEDERATION = Meta("federation-1", "charity_federation", "000000")
OFFICER = Meta("officer-zhang", "county_officer", "370502")
REAL_NAME = "王小明"
_REFERRALS = itertools.count(1)


class Charity:
    """Charity's application and read models: in memory, or a runtime's."""

    def __init__(self, runtime=None) -> None:
        if runtime is None:
            self.app = CharityApplication(dict(MEMORY_ENV), clock=FixedClock(NOW))
            self.side = SideStore.in_memory()
            self.projection = Projection(self.app, self.side, project)
        else:
            self.app, self.side, self.projection = runtime.app, runtime.side, runtime.projection

    def need(self, amount_fen: int, *, consent: bool = True, category: str = "medical",
             urgency: str = "urgent") -> str:
        """A referral to charity, as intake publishes it: the need's id."""
        referral_id = f"R-FED{next(_REFERRALS):06d}"
        case_id = new_case_id()
        self.app.process_cloud_event(cloud("ReferralRaised", {
            "referral_id": referral_id, "case_id": case_id, "target": "charity", "need_category": category,
            "amount_asked_fen": amount_fen, "urgency": urgency, "due_date": "2026-12-10",
            "consent_to_share": consent,
            "household_profile": {"region_code": VILLAGE, "members_count": 3, "name_masked": "王*明",
                                  "assistance_type": "dibao"},
            "raised_at": NOW,
        }, subject=case_id, source="lifeline/intake"))
        return "N-" + referral_id.split("-", 1)[1]

    def fund(self, balance_fen: int, category: str = "medical") -> str:
        return self.app.register_fund({
            "name": "东营区救急难专项基金", "kind": "special", "need_categories": [category],
            "region_code": "370502", "balance_fen": balance_fen, "per_case_cap_fen": None, "valid_until": None,
        }, OFFICER)

    def publish(self) -> list[str]:
        self.projection.catch_up()
        published = publish_uncovered(self.app, self.side)
        self.projection.catch_up()
        return published

    def items(self) -> list[dict]:
        with self.side.transaction() as tx:
            return [doc for _, doc in tx.page(FEED_ITEM, "", 10_000)]

    def events(self, *types: type) -> list:
        notes = self.app.recorder.select_notifications(1, 10_000)
        return [e for e in (self.app.mapper.to_domain_event(n) for n in notes) if isinstance(e, types)]


@pytest.fixture
def charity():
    c = Charity()
    yield c
    c.side.close()
    c.app.close()


# --- publication ----------------------------------------------------------------------------------
def test_what_no_fund_covers_is_published_once_with_consent_only(charity):
    charity.fund(300_000)                      # covers part of the first urgent need's ask
    short = charity.need(500_000, urgency="critical")
    no_fund = charity.need(100_000, category="education")  # no education fund: short by all of it
    in_kind = charity.need(0, category="living")           # help in kind: always published
    secret = charity.need(900_000, consent=False)          # no consent: never published
    assert sorted(charity.publish()) == sorted([short, no_fund, in_kind])
    published = {e.need_id: e for e in charity.events(Need.Published)}
    assert published[short].amount_still_needed_fen == 200_000
    assert published[no_fund].amount_still_needed_fen == 100_000
    assert published[in_kind].amount_still_needed_fen == 0
    assert secret not in published
    assert charity.publish() == []             # once
    assert len(charity.events(Need.Published)) == 3
    need = charity.app.repository.get(Need.create_id(secret))
    with pytest.raises(NeedRuleViolation) as refused:
        need.publish(900_000, NOW, FEDERATION)
    assert refused.value.rule == "consent_to_share"


def test_a_need_the_funds_cover_stays_off_the_feed_and_the_more_urgent_need_is_served_first(charity):
    charity.fund(500_000)
    normal = charity.need(400_000, urgency="normal")
    critical = charity.need(400_000, urgency="critical")
    # One ledger: the critical need takes 400,000, the normal one is left 300,000 short.
    assert charity.publish() == [normal]
    (event,) = charity.events(Need.Published)
    assert event.amount_still_needed_fen == 300_000
    assert critical not in [e.need_id for e in charity.events(Need.Published)]


def test_the_federation_sees_a_masked_profile_never_an_id_number_case_village_or_name(charity):
    needs = [charity.need(200_000 + n) for n in range(3)]
    charity.publish()
    for need_id in needs[:2]:
        accept_need(charity.app, need_id, "东营区慈善总会", "已认领", FEDERATION)
    fulfil_need(charity.app, needs[0], "东营区慈善总会", 200_000, "已拨付", FEDERATION)
    charity.projection.catch_up()
    items = charity.items()
    assert [i["type"] for i in items] == ["need.published"] * 3 + ["need.accepted"] * 2 + ["need.fulfilled"]
    cases = {e.case_id for e in charity.events(Need.Opened)}
    id_number = re.compile(r"\d{17}[\dX]")
    for item in items:
        assert set(item) == {"id", "cursor", "type", "timestamp", "data"}
        assert set(item["data"]) == {"need_id", "name_masked", "region_code", "members_count", "household_type",
                                     "need_category", "amount_still_needed_fen", "urgency", "due_date", "status"}
        text = json.dumps(item, ensure_ascii=False)
        assert not id_number.search(text)
        assert not any(case_id in text for case_id in cases)
        assert VILLAGE not in text and REAL_NAME not in text
        assert item["data"]["region_code"] == VILLAGE[:9]
        assert item["data"]["name_masked"] == "王*明"


# --- the feed --------------------------------------------------------------------------------------
def test_the_feed_is_in_log_order_with_stable_ids_and_a_rebuild_numbers_it_the_same(charity):
    first, second = charity.need(100_000), charity.need(200_000)
    charity.publish()
    accept_need(charity.app, second, "东营区慈善总会", "", FEDERATION)
    fulfil_need(charity.app, second, "东营区慈善总会", 150_000, "", FEDERATION)
    charity.projection.catch_up()
    items = charity.items()
    assert [i["cursor"] for i in items] == [f"{n:012d}" for n in range(1, 5)]
    assert {i["id"] for i in items[:2]} == {f"{first}/published", f"{second}/published"}
    assert [i["id"] for i in items[2:]] == [f"{second}/accepted", f"{second}/fulfilled"]
    assert items[3]["data"]["status"] == "fulfilled" and items[3]["data"]["amount_still_needed_fen"] == 0
    assert items[2]["timestamp"] == NOW
    assert compare(charity.side, rebuild(charity.app, project)) == []


def test_a_published_need_the_funds_cover_later_is_withdrawn_by_its_fulfilled_item(charity):
    need_id = charity.need(100_000)
    charity.publish()
    fund_id = charity.fund(1_000_000)
    allocation = charity.app.allocate(need_id, fund_id, 100_000, OFFICER)
    charity.app.disburse(need_id, allocation.allocation_id, "VOUCHER-1", None, OFFICER)
    charity.projection.catch_up()
    assert [(i["id"], i["data"]["status"]) for i in charity.items()] == [
        (f"{need_id}/published", "published"), (f"{need_id}/fulfilled", "fulfilled")]


# --- feedback ------------------------------------------------------------------------------------------
def test_the_federations_feedback_needs_a_published_need_and_repeats_change_nothing(charity):
    unpublished = charity.need(100_000, consent=False)
    with pytest.raises(NeedRuleViolation) as refused:
        accept_need(charity.app, unpublished, "东营区慈善总会", "", FEDERATION)
    assert refused.value.rule == "not_published"
    with pytest.raises(NeedRuleViolation) as refused:
        fulfil_need(charity.app, unpublished, "东营区慈善总会", 100_000, "", FEDERATION)
    assert refused.value.rule == "not_published"
    need_id = charity.need(100_000)
    charity.publish()
    accept_need(charity.app, need_id, "东营区慈善总会", "", FEDERATION)
    accept_need(charity.app, need_id, "东营区慈善总会", "again", FEDERATION)
    with pytest.raises(NeedRuleViolation) as refused:
        accept_need(charity.app, need_id, "另一慈善会", "", FEDERATION)
    assert refused.value.rule == "accepted_by_another"
    fulfil_need(charity.app, need_id, "东营区慈善总会", 100_000, "", FEDERATION)
    fulfil_need(charity.app, need_id, "东营区慈善总会", 100_000, "", FEDERATION)
    assert len(charity.events(Need.Accepted)) == 1
    (fulfilled,) = charity.events(Need.Fulfilled)
    assert (fulfilled.by, fulfilled.organisation, fulfilled.amount_fen) == ("federation", "东营区慈善总会", 100_000)


# --- webhooks ------------------------------------------------------------------------------------------
def test_a_delivery_is_signed_the_standard_webhooks_way_and_the_reference_package_verifies_it():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    item = {"id": "N-ABC/published", "cursor": "000000000001", "type": "need.published", "timestamp": NOW,
            "data": {"need_id": "N-ABC", "name_masked": "王*明"}}
    body = body_of(item)
    headers = signed_headers(secret, item["id"], body, time.time())
    assert Webhook(secret).verify(body, headers) == item
    assert headers["webhook-signature"] == sign(secret, item["id"], int(headers["webhook-timestamp"]), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"N-ABC", b"N-ABD"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    stale = signed_headers(secret, item["id"], body, time.time() - 600)  # receivers allow 5 minutes
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)
    # A secret the federation chose: whsec_ and the base64 of 24 to 64 bytes.
    assert len(secret_key("whsec_" + base64.b64encode(b"k" * 24).decode())) == 24
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + base64.b64encode(b"short").decode(),
                "whsec_not base64!", "whsec_" + base64.b64encode(b"k" * 65).decode()):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_failed_deliveries_are_retried_after_1_s_doubling_up_to_the_cap():
    assert [backoff_seconds(n, 300) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert [backoff_seconds(n, 2) for n in range(1, 5)] == [1, 2, 2, 2]


def test_a_webhook_url_is_http_or_https():
    for good in ("https://federation.example.org/hooks", "http://127.0.0.1:8012/webhooks"):
        assert check_url(good) == good
    for bad in ("ftp://federation.example.org/hooks", "federation.example.org/hooks", "https://", "javascript:x",
                "https://user:pw@federation.example.org/", "http://host:99999/", "https://a b/",
                "https://x.org/" + "a" * 2000):
        with pytest.raises(ValueError):
            check_url(bad)
