"""`lifeline demo` and `lifeline payment-run` against a running Lifeline (every service, the
partner and bank simulators as separate processes, on the shared test clock): the commands
as an operator runs them, with the Lifeline's environment."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


pytestmark = pytest.mark.e2e

COUNTY = "370502"


def run_cli(lifeline, *args: str) -> subprocess.CompletedProcess:
    r = lifeline.cli(*args)
    print(f"$ lifeline {' '.join(args)}  -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def run_period(demo_output: str) -> str:
    """The period whose run pays the demo's households, from the command it suggests."""
    match = re.search(r"^Next: lifeline payment-run --period (\d{4}-\d{2}) --county " + COUNTY + "$",
                      demo_output, re.M)
    assert match, demo_output
    return match.group(1)


def completed_payments(run_output: str) -> int:
    match = re.search(r"^(\d+) payments? completed, ", run_output, re.M)
    assert match, run_output
    return int(match.group(1))


def test_demo_households_are_paid_by_the_payment_run(lifeline):
    demo = run_cli(lifeline, "demo", "--households", "3", "--budget", "--county", COUNTY)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "3 of 3 households approved: 3 entitlements" in demo.stdout
    assert len(re.findall(r"entitlement E-", demo.stdout)) == 3
    period = run_period(demo.stdout)
    assert re.search(rf"^Budget: dibao_fund for {period} in {COUNTY} set to ", demo.stdout, re.M), demo.stdout

    run = run_cli(lifeline, "payment-run", "--period", period, "--county", COUNTY, "--timeout", "90")
    assert run.returncode == 0, run.stdout + run.stderr
    assert completed_payments(run.stdout) >= 3
    # Not a terminal: plain progress lines, no bar.
    assert "█" not in run.stdout and "\r" not in run.stdout
    assert re.search(r"^(instructing|instructed|completed): \d+/\d+ payments instructed", run.stdout, re.M)

    # The period is paid once: the same command again reports the run that exists.
    again = run_cli(lifeline, "payment-run", "--period", period, "--county", COUNTY, "--timeout", "30")
    assert again.returncode == 0 and "exists already (completed)" in again.stdout
    assert completed_payments(again.stdout) == completed_payments(run.stdout)


def test_a_run_without_a_budget_waits_for_another_officer(lifeline):
    demo = run_cli(lifeline, "demo", "--households", "1", "--county", COUNTY)  # no --budget
    assert demo.returncode == 0, demo.stdout + demo.stderr
    period = run_period(demo.stdout)
    waiting = run_cli(lifeline, "payment-run", "--period", period, "--county", COUNTY, "--user", "officer-zhang",
                      "--timeout", "60")
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert "awaiting approval" in waiting.stdout and "no budget set" in waiting.stdout
    assert "other than officer-zhang" in waiting.stdout

    run_id = re.search(r"^Payment run (\S+) for ", waiting.stdout, re.M).group(1)
    with lifeline.client("payment", "county_officer", COUNTY, user="officer-li") as c:
        r = c.post(f"/v1/payment-runs/{run_id}/approval", json={"reason": "追加预算已报批"},
                   headers={"Idempotency-Key": f"approve-{run_id}"})
    assert r.status_code == 200, r.text
    done = run_cli(lifeline, "payment-run", "--period", period, "--county", COUNTY, "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    assert completed_payments(done.stdout) >= 1


def test_payment_run_prints_the_apis_problem(lifeline):
    # Run with another Lifeline's secret: payment refuses the token (401 problem+json), and the
    # command prints the problem's title and detail and fails.
    env = {**lifeline.env, "LIFELINE_JWT_SECRET": "another-lifelines-secret-0123456789-abcdef"}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "payment-run", "--period", "2027-01", "--county",
                        COUNTY, "--timeout", "5"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"POST http://127\.0\.0\.1:\d+/v1/payment-runs answered 401 Unauthorized", r.stderr), r.stderr
    assert "detail: The token is invalid." in r.stderr


def test_demo_refuses_at_once_without_the_shared_clock(lifeline):
    env = {k: v for k, v in lifeline.env.items() if k != "LIFELINE_TEST_CLOCK"}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "demo", "--households", "1"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "LIFELINE_TEST_CLOCK=1 lifeline up" in r.stderr
