"""资金+实物+服务 (issue 17): the pure rules of services and goods in kind bought from providers —
the unified social credit code's check character, what an order costs, the county's limits per
order and per case and year, the provider's contract term and regions, the ids that make a
delivery one delivery and its payment one payment."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from lifeline.rules.policy import PolicyBook, PolicyError, ServiceLimits
from services.payment.providers import provider_payment_id
from services.verification.services_in_kind import (
    CREDIT_CODE, Refused, check_order_limits, credit_code_check_char, credit_code_problem, delivery_id_of,
    order_amount, period_in_term, serves,
)

# Published codes of well-known companies and the standard's own example (GB 32100-2015).
REAL_CODES = ("914403001922038216", "91440300708461136T", "91350100M000100Y43")


@pytest.mark.parametrize("code", [*REAL_CODES, CREDIT_CODE])
def test_the_credit_code_check_character_of_real_codes(code):
    assert credit_code_check_char(code[:17]) == code[17]
    assert credit_code_problem(code) is None


def test_a_wrong_check_character_or_a_malformed_code_is_refused_without_quoting_it():
    code = REAL_CODES[1]
    for wrong in (code[:17] + "0", code[:17] + "S", code[:-1], code + "1", "91440300708461I36T", "9144O300708461136T",
                  "91AB0300708461136T"):
        problem = credit_code_problem(wrong)
        assert problem and wrong not in problem, wrong
    # 31 written as 0: a code whose weighted sum is a multiple of 31 ends in 0.
    first17 = next(c for c in (f"9137050200000{n:04d}" for n in range(10000))
                   if credit_code_check_char(c) == "0")
    assert credit_code_problem(first17 + "0") is None


def test_an_order_costs_quantity_times_the_providers_unit_price():
    assert order_amount(4, 20000) == 80000
    with pytest.raises(ValueError):
        order_amount(0, 20000)


LIMITS = ServiceLimits(per_order_fen=300000, per_case_year_fen=1200000)


def test_the_limit_per_order_is_inclusive_and_named():
    check_order_limits(300000, 0, LIMITS)
    with pytest.raises(Refused) as refused:
        check_order_limits(300001, 0, LIMITS)
    assert (refused.value.rule, refused.value.status) == ("service_order_limit", 422)
    assert refused.value.extras == {"limit": "per_order_fen", "limit_fen": 300000}


def test_the_limit_per_case_and_year_counts_what_was_ordered_before():
    check_order_limits(300000, 900000, LIMITS)
    with pytest.raises(Refused) as refused:
        check_order_limits(1, 1200000, LIMITS)
    assert (refused.value.rule, refused.value.extras["limit"]) == ("service_year_limit", "per_case_year_fen")


def test_a_contract_covers_a_month_when_it_covers_any_of_its_days():
    start, end = date(2026, 3, 15), date(2026, 6, 1)
    assert [period_in_term(p, start, end) for p in ("2026-02", "2026-03", "2026-05", "2026-06", "2026-07")] == \
        [False, True, True, True, False]
    assert period_in_term("2026-02", date(2026, 2, 28), date(2026, 2, 28))


def test_a_provider_serves_the_divisions_within_its_regions():
    assert serves(["370502"], "370502101001")
    assert serves(["370502102", "370502101"], "370502101001")
    assert not serves(["370502102"], "370502101001")
    assert not serves(["370602"], "370502101")


def test_a_delivery_is_its_reference_on_its_order_and_its_payment_is_the_delivery():
    one = delivery_id_of("SO-1", "XQ-0610-01")
    assert one == delivery_id_of("SO-1", "XQ-0610-01") != delivery_id_of("SO-2", "XQ-0610-01")
    assert one != delivery_id_of("SO-1", "XQ-0610-02") and one.startswith("SD-") and len(one) == 23
    payment = provider_payment_id(one)
    assert payment == "PP-" + one[3:] and len(payment) <= 35  # an EndToEndId holds 35
    assert provider_payment_id("SD-" + "X" * 60).startswith("PP-") and len(provider_payment_id("SD-" + "X" * 60)) <= 35


def test_the_policy_file_sets_the_limits_and_refuses_a_limit_per_order_above_the_year(raw_policy):
    book = PolicyBook.from_mapping(raw_policy)
    assert book.policy_for("370502", date(2026, 6, 1)).services == LIMITS
    assert book.policy_for("370602", date(2026, 6, 1)).services == ServiceLimits()  # the defaults
    bad = copy.deepcopy(raw_policy)
    bad["counties"][1]["services"] = {"per_order_fen": 2000000, "per_case_year_fen": 1000000}
    with pytest.raises(PolicyError, match=r"counties\[1\]\.services\.per_order_fen: must be <= per_case_year_fen"):
        PolicyBook.from_mapping(bad)
    bad["counties"][1]["services"] = {"per_order_fen": 0}
    with pytest.raises(PolicyError, match=r"counties\[1\]\.services\.per_order_fen"):
        PolicyBook.from_mapping(bad)
