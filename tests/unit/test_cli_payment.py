"""`lifeline payment-run` and `lifeline demo` without a running Lifeline: their arguments, how
they show amounts, progress and problems, and how they talk to the APIs (httpx.MockTransport)."""

from __future__ import annotations

import io
import json
from datetime import datetime

import httpx
import jwt
import pytest

from lifeline import cli
from lifeline.dev import demo
from lifeline.rules.ids import is_valid_resident_id
from lifeline.settings import Settings

SECRET = "unit-test-jwt-secret-0123456789abcdef"
RUN_ID = "PR-370502-202701"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": SECRET})


def parse(*argv: str):
    parser_args = ["payment-run", *argv]
    captured = {}

    def keep(args):
        captured["args"] = args
        return 0

    original = cli.cmd_payment_run
    cli.cmd_payment_run = keep
    try:
        assert cli.main(parser_args) == 0
    finally:
        cli.cmd_payment_run = original
    return captured["args"]


# --- arguments -----------------------------------------------------------------------------
def test_payment_run_arguments_and_their_defaults():
    args = parse("--period", "2027-01", "--county", "370502")
    assert (args.period, args.county, args.user, args.wait, args.timeout) == ("2027-01", "370502", None, True, 600)
    args = parse("--period", "2027-01", "--county", "370502", "--no-wait", "--user", "officer-zhang",
                 "--timeout", "30")
    assert (args.wait, args.user, args.timeout) == (False, "officer-zhang", 30)


@pytest.mark.parametrize("argv", [
    ["--period", "2027-13", "--county", "370502"],
    ["--period", "202701", "--county", "370502"],
    ["--period", "2027-01", "--county", "370502101"],   # a township, not a county
    ["--period", "2027-01", "--county", "37050"],
    ["--period", "2027-01"],                            # the county is required
])
def test_payment_run_refuses_bad_arguments_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["payment-run", *argv])
    assert exited.value.code == 2
    assert "payment-run" in capsys.readouterr().err


def test_demo_arguments_and_their_defaults(monkeypatch):
    captured = {}
    monkeypatch.setattr(cli, "cmd_demo", lambda args: captured.setdefault("args", args) and 0)
    cli.main(["demo", "--households", "3"])
    args = captured["args"]
    assert (args.households, args.county, args.period, args.budget, args.concurrency, args.seed) == (
        3, "370502", None, False, 8, None)


# --- amounts, progress, problems ---------------------------------------------------------------
@pytest.mark.parametrize("fen, shown", [
    (0, "0.00 元"), (5, "0.05 元"), (100, "1.00 元"), (98000, "980.00 元"), (123456, "1,234.56 元"),
    (1_200_000_000, "12,000,000.00 元"), (-150, "-1.50 元"),
])
def test_amounts_are_yuan_with_two_decimals_from_fen(fen, shown):
    assert cli.yuan(fen) == shown


def test_the_bar_is_instructed_of_planned():
    assert cli.bar(0, 4, width=8) == "[░░░░░░░░]"
    assert cli.bar(1, 4, width=8) == "[██░░░░░░]"
    assert cli.bar(4, 4, width=8) == "[████████]"
    assert cli.bar(0, 0, width=8) == "[████████]"  # nothing to pay is done


def view(status: str = "instructing", count: int = 0, total_fen: int = 0, planned: int | None = 3,
         batches: list[dict] | None = None, **more) -> dict:
    return {
        "run_id": RUN_ID, "county_code": "370502", "period": "2027-01", "status": status,
        "started_by": "officer-zhang",
        "planned": None if planned is None else {
            "count": planned, "total_fen": 498000, "by_fund_source": {"dibao_fund": {"count": planned,
                                                                                    "total_fen": 498000}},
            "budget_check": [{"fund_source": "dibao_fund", "needed_fen": 498000, "budget_fen": 100,
                              "used_fen": 0, "remaining_fen": 100, "exceeds": True}],
            "skipped": []},
        "count": count, "total_fen": total_fen, "batches": batches or [], "by_channel": {}, "by_fund_source": {},
        "reconciliation": None, **more,
    }


def test_progress_lines_say_status_instructed_of_planned_and_amounts():
    assert cli.run_progress(view("started", planned=None)) == "started: planning what the run pays"
    line = cli.run_progress(view(count=2, total_fen=332000, batches=[
        {"channel": "ICBC", "submitted": True}, {"channel": "ABC", "submitted": False}]))
    assert line == ("instructing: 2/3 payments instructed (66%), 3,320.00 元 of 4,980.00 元, "
                    "1/2 batches with the bank")


def test_plain_progress_prints_a_line_per_change_and_a_tty_redraws_one_bar():
    plain = io.StringIO()
    progress = cli.RunProgress(plain, tty=False)
    for v in (view("started", planned=None), view(count=1), view(count=1), view("completed", count=3)):
        progress.update(v)
    progress.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in plain.getvalue() and "█" not in plain.getvalue()
    assert lines[1].startswith("instructing: 1/3 payments") and lines[2].startswith("completed: 3/3")

    tty = io.StringIO()
    progress = cli.RunProgress(tty, tty=True, width=10)
    progress.update(view(count=1))
    progress.update(view("completed", count=3))
    progress.close()
    out = tty.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "[███░░░░░░░] instructing: 1/3" in out and "[██████████] completed: 3/3" in out


def test_a_problem_is_shown_with_title_detail_rule_and_the_fields_it_names():
    lines = cli.problem_lines(409, {"type": "https://lifeline.example/problems/four-eyes", "title": "Not possible now",
                                    "status": 409, "detail": "the starter may not approve", "rule": "four_eyes"})
    assert lines == ["409 Not possible now", "  detail: the starter may not approve", "  rule:   four_eyes"]
    lines = cli.problem_lines(422, {"title": "Request validation failed", "detail": "The request does not match",
                                    "errors": [{"pointer": "#/period", "detail": "String should match pattern"}]})
    assert lines[-1] == "  #/period: String should match pattern"
    assert cli.problem_lines(502, "<html>Bad gateway</html>") == ["502 <html>Bad gateway</html>"]


def test_budget_and_summary_lines():
    assert cli.budget_line(view()["planned"]["budget_check"][0]) == (
        "  dibao_fund: needs 4,980.00 元, budget 1.00 元, used 0.00 元, remaining 1.00 元: EXCEEDS the budget")
    done = view("completed", count=3, total_fen=498000, batches=[{"channel": "ICBC", "submitted": True}],
                by_channel={"ICBC": {"count": 3, "total_fen": 498000, "batches": 1}},
                by_fund_source={"dibao_fund": {"count": 3, "total_fen": 498000}})
    lines = cli.run_summary(done)
    assert lines[0] == "3 payments completed, 4,980.00 元, in 1 bank batch"
    assert any(line.split()[:3] == ["ICBC", "3", "payments"] for line in lines)
    assert "not reconciled yet" in lines[-1]


# --- payment-run against a mock payment service ---------------------------------------------------
class Payment:
    """A payment service answering the run's endpoints from a script of views."""

    def __init__(self, views: list[dict], start_status: int = 202, start_body: dict | None = None):
        self.views = views
        self.start_status, self.start_body = start_status, start_body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST" and request.url.path == "/v1/payment-runs":
            body = self.start_body or {"run_id": RUN_ID, "county_code": "370502", "period": "2027-01",
                                       "status": "started", "started": True}
            return httpx.Response(self.start_status, json=body)
        if request.method == "GET" and request.url.path == f"/v1/payment-runs/{RUN_ID}":
            return httpx.Response(200, json=self.views.pop(0) if len(self.views) > 1 else self.views[0])
        return httpx.Response(404, json={"title": "Not Found", "status": 404})


def run(settings, payment: Payment, *argv: str, tty: bool = False) -> tuple[int, str, str]:
    args = parse("--period", "2027-01", "--county", "370502", *argv)
    args.interval = 0
    out, err = io.StringIO(), io.StringIO()
    code = cli.payment_run(args, settings, out=out, err=err, tty=tty, transport=httpx.MockTransport(payment))
    return code, out.getvalue(), err.getvalue()


def test_a_run_is_started_with_a_county_officers_token_and_followed_to_completion(settings):
    completed = view("completed", count=3, total_fen=498000, batches=[{"channel": "ICBC", "submitted": True}],
                     by_channel={"ICBC": {"count": 3, "total_fen": 498000, "batches": 1}})
    payment = Payment([view("started", planned=None), view(count=1), completed])
    code, out, err = run(settings, payment, "--user", "officer-zhang")
    assert code == 0, err
    start = payment.requests[0]
    assert json.loads(start.content) == {"period": "2027-01", "county_code": "370502"}
    claims = jwt.decode(start.headers["authorization"].removeprefix("Bearer "), SECRET, algorithms=["HS256"],
                        issuer="lifeline")
    assert (claims["role"], claims["region"], claims["sub"]) == ("county_officer", "370502", "officer-zhang")
    assert f"Payment run {RUN_ID} for 2027-01 in 370502: started" in out
    assert "instructing: 1/3 payments instructed" in out
    assert "3 payments completed, 4,980.00 元, in 1 bank batch" in out


def test_a_run_that_exists_is_reported_and_followed(settings):
    payment = Payment([view("completed", count=3, total_fen=498000)], start_body={
        "run_id": RUN_ID, "county_code": "370502", "period": "2027-01", "status": "completed", "started": False})
    code, out, _ = run(settings, payment)
    assert code == 0 and "exists already (completed)" in out


def test_a_run_over_budget_says_so_and_how_to_approve_with_a_distinct_exit_code(settings):
    code, out, _ = run(settings, Payment([view("awaiting_approval")]))
    assert code == cli.EXIT_AWAITING_APPROVAL == 3
    assert "awaiting approval" in out and "EXCEEDS the budget" in out
    assert f"POST http://127.0.0.1:8003/v1/payment-runs/{RUN_ID}/approval" in out
    assert "other than officer-zhang" in out


def test_no_wait_starts_and_returns(settings):
    payment = Payment([view()])
    code, out, _ = run(settings, payment, "--no-wait")
    assert code == 0 and len(payment.requests) == 1 and f"/v1/payment-runs/{RUN_ID}" in out


def test_a_problem_from_the_api_is_printed_with_title_detail_and_rule(settings):
    payment = Payment([view()], start_status=403, start_body={
        "type": "https://lifeline.example/problems/region", "title": "Outside your region", "status": 403,
        "detail": "370502 is not within 370602", "rule": "region"})
    code, out, err = run(settings, payment)
    assert code == cli.EXIT_API_ERROR
    assert "POST http://127.0.0.1:8003/v1/payment-runs answered 403 Outside your region" in err
    assert "detail: 370502 is not within 370602" in err and "rule:   region" in err


def test_a_run_not_completed_in_time_exits_4(settings):
    code, _, err = run(settings, Payment([view(count=1)]), "--timeout", "0")
    assert code == cli.EXIT_TIMEOUT == 4 and "still instructing" in err


# --- demo ----------------------------------------------------------------------------------------
def test_demo_households_have_new_valid_distinct_ids_and_their_own_accounts():
    households = demo.make_households("seed-1", 30, "370502")
    people = [p for h in households for p in h.people]
    assert len(people) == len(set(people)) == 60  # 1, 2, 3 people in turn
    assert all(is_valid_resident_id(p) and p.startswith("370502") for p in people)
    assert len({h.account for h in households}) == 30
    assert all(len(h.account) == 19 and h.account.isdigit() for h in households)
    assert demo.make_households("seed-1", 3, "370502") == households[:3]  # the seed decides
    assert demo.make_households("seed-2", 3, "370502")[0].people != households[0].people


def test_demo_application_is_a_valid_application():
    from services.intake.api import ApplicationIn

    for h in demo.make_households("seed-1", 3, "370502"):
        ApplicationIn.model_validate(demo.application_body(h, "370502101001"))


def demo_args(*argv: str):
    captured = {}
    original = cli.cmd_demo
    cli.cmd_demo = lambda args: captured.setdefault("args", args) and 0
    try:
        cli.main(["demo", *argv])
    finally:
        cli.cmd_demo = original
    return captured["args"]


def test_demo_refuses_at_once_without_the_shared_test_clock(settings):
    err = io.StringIO()
    code = demo.run_demo(demo_args("--households", "3"), settings, out=io.StringIO(), err=err,
                         transport=httpx.MockTransport(lambda r: pytest.fail(f"no request expected: {r.url}")))
    assert code == 2
    assert "LIFELINE_TEST_CLOCK=1 lifeline up" in err.getvalue()


def test_demo_stops_when_intake_does_not_read_the_shared_clock(tmp_path):
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": SECRET,
                                  "LIFELINE_TEST_CLOCK": "1"})

    def services(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/readyz" or request.method == "PUT":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/v1/applications":
            return httpx.Response(201, json={"case_id": "C-1", "status": "submitted"})
        if path.endswith("/acceptance"):  # intake on the system clock
            return httpx.Response(200, json={"case_id": "C-1", "accepted_at": "2020-01-01T09:00:00+08:00"})
        return pytest.fail(f"unexpected {request.method} {path}")

    err = io.StringIO()
    code = demo.run_demo(demo_args("--households", "1"), settings, out=io.StringIO(), err=err,
                         transport=httpx.MockTransport(services))
    assert code == 2
    assert "intake does not read the shared test clock" in err.getvalue()
    assert "LIFELINE_TEST_CLOCK=1 lifeline up" in err.getvalue()
    # The clock was frozen at a whole second, where it stays.
    frozen = json.loads((tmp_path / "clock.json").read_text())["moment"]
    assert datetime.fromisoformat(frozen).microsecond == 0


def test_demo_with_a_period_starts_the_month_before_it(tmp_path):
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": SECRET,
                                  "LIFELINE_TEST_CLOCK": "1"})
    (tmp_path / "clock.json").write_text(json.dumps({"moment": "2026-11-20T10:00:00+08:00"}))
    d = demo.Demo(settings, households=1, county="370502", village="370502101001", period="2027-03", budget=False,
                  concurrency=1, timeout=1, seed="s", out=io.StringIO(), err=io.StringIO())
    from lifeline.domain.clock import clock_for

    d.clock = clock_for(settings)
    assert d.freeze_clock().isoformat() == "2027-02-01T09:00:00+08:00"
    d.period = "2027-01"  # the clock stands in February now and only moves forward
    with pytest.raises(ValueError, match="first payment period is 2027-03"):
        d.freeze_clock()


def test_demo_refuses_a_village_outside_the_county(settings, capsys):
    err = io.StringIO()
    code = demo.run_demo(demo_args("--households", "1", "--village", "370602101001"), settings,
                         out=io.StringIO(), err=err)
    assert code == 2 and "--village" in err.getvalue()
