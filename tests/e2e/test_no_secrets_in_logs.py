"""No secret or key in any log line (issue 16): a Lifeline is driven through the paths that log
most (a submission under an Idempotency-Key and its replay, bad tokens, a bad body, a Redis that
refuses a replica), then every log in its data dir is read. The session does the same for every
Lifeline the suite starts (tests/conftest.py no_secret_in_any_log); this test fails on its own."""

from __future__ import annotations

import httpx
import pytest

from lifeline.dev.embedded import free_port
from lifeline.http.auth import mint_token
from lifeline.ops.redisauth import url_password
from tests import logscan
from tests.conftest import TEST_CIPHER_KEY, TEST_JWT_SECRET
from tests.e2e.conftest import new_people
from tests.harness import household

pytestmark = pytest.mark.e2e


def test_no_log_line_holds_a_secret_a_key_or_a_token(lifeline):
    token = lifeline.token("clerk", "370502")
    with lifeline.client("intake", "clerk", "370502") as c:
        body = household(new_people(1), "370502101001")
        first = c.post("/v1/applications", json=body, headers={"Idempotency-Key": "no-secrets-1"})
        again = c.post("/v1/applications", json=body, headers={"Idempotency-Key": "no-secrets-1"})
        assert first.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true", first.text
        assert c.post("/v1/applications", json={"members": "x"}).status_code == 422
    forged = mint_token("not-the-secret-0123456789abcdef-0123456789", role="admin", region="000000",
                        user_id="mallory", org_code="000000")
    for bearer in (forged, token + "x", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."):
        r = httpx.get(lifeline.url("intake") + "/v1/cases/C-NONE", headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 401, r.text
    # A replica whose Redis password is wrong: its readiness and its log say why, not the password.
    wrong = lifeline.env["LIFELINE_REDIS_URL"].replace(url_password(lifeline.env["LIFELINE_REDIS_URL"]),
                                                       "wrong-password-0123456789")
    lifeline.start_replica("intake", "intake-wrongredis", free_port(), {"LIFELINE_REDIS_URL": wrong},
                           ready_path="/healthz")
    r = httpx.get(lifeline.url("intake-wrongredis") + "/readyz")
    assert r.status_code == 503 and "wrong-password" not in r.text, r.text
    lifeline.stop("intake-wrongredis")

    secrets = logscan.secrets_of(lifeline.data_dir, lifeline.seen_env)
    values = set(secrets.values())
    # Not vacuous: the JWT and cipher secrets, the Redis password and the signing keys are looked for.
    assert {TEST_JWT_SECRET, TEST_CIPHER_KEY, url_password(lifeline.env["LIFELINE_REDIS_URL"])} <= values
    assert any(kind.startswith("lifeline-intake.ed25519") for kind in secrets)
    files = logscan.log_files(lifeline.data_dir)
    assert lifeline.logs / "intake.log" in files and lifeline.logs / "intake-wrongredis.log" in files
    assert not logscan.leaks(files, secrets)
