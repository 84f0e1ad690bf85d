"""HTTP edge: problem+json errors, body limit, bearer auth with roles and regions."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from lifeline.http.auth import (
    Authenticator,
    Principal,
    Role,
    ensure_region,
    mint_token,
)
from lifeline.http.problems import (
    PROBLEM_JSON,
    BodySizeLimit,
    Problem,
    install_problem_handlers,
    problem_response,
)

SECRET = "test-secret-with-at-least-32-bytes!!"
COUNTY = "320583"
TOWNSHIP = "320583101"
VILLAGE = "320583101001"
MAX_BODY = 1024


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    age: int = Field(ge=0)


class NewCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region_code: str
    members: list[Member]


def build_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY)
    auth = Authenticator(SECRET, "lifeline")

    @app.get("/cases/{region}")
    def read_case(region: str, who: Principal = auth.require(Role.caseworker, Role.clerk)):
        ensure_region(who, region)
        return {"region": region, "user": who.user_id, "role": who.role.value}

    @app.get("/whoami")
    def whoami(who: Principal = auth.require()):
        return {"user": who.user_id, "org": who.org_code}

    @app.post("/cases")
    def create(body: NewCase):
        return {"members": len(body.members)}

    @app.post("/raw")
    async def raw(request: Request):
        return {"size": len(await request.body())}

    @app.get("/conflict")
    def conflict():
        raise Problem(409, "Case already closed", "Case c-1 was closed on 2026-03-01.",
                      slug="case-closed", case_id="c-1")

    @app.get("/crash")
    def crash():
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/direct")
    def direct():
        return problem_response(429, detail="Slow down.", headers={"Retry-After": "3"})

    @app.get("/limit")
    def limit(n: int):
        return {"n": n}

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_app(), raise_server_exceptions=False)


def bearer(**kw) -> dict[str, str]:
    kw.setdefault("role", Role.caseworker)
    kw.setdefault("region", COUNTY)
    return {"Authorization": "Bearer " + mint_token(SECRET, **kw)}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert body["type"] == "about:blank" or body["type"].startswith("https://lifeline.example/problems/")
    return body


# --- authentication -------------------------------------------------------------
def test_401_without_token(client):
    r = client.get(f"/cases/{TOWNSHIP}")
    body = assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "error=" not in r.headers["www-authenticate"]  # RFC 6750: no credentials, no error code
    assert body["instance"] == f"/cases/{TOWNSHIP}"


def test_401_bad_signature(client):
    token = mint_token("another-secret-that-is-32-bytes-long", role=Role.caseworker, region=COUNTY)
    r = client.get(f"/cases/{TOWNSHIP}", headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 401)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_401_expired(client):
    r = client.get(f"/cases/{TOWNSHIP}", headers=bearer(now=int(time.time()) - 7200, ttl_seconds=60))
    body = assert_problem(r, 401)
    assert "expired" in body["detail"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_token_verified_once_is_refused_once_it_expires(client):
    # Verified tokens are remembered (lifeline/http/auth.py), each only until its own expiry.
    headers = bearer(now=int(time.time()) - 58, ttl_seconds=60)
    assert client.get(f"/cases/{TOWNSHIP}", headers=headers).status_code == 200
    time.sleep(2.5)
    body = assert_problem(client.get(f"/cases/{TOWNSHIP}", headers=headers), 401)
    assert "expired" in body["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer not.a.jwt",
        # right secret, wrong issuer
        "Bearer " + mint_token(SECRET, role="clerk", region=COUNTY, issuer="someone-else"),
        # right secret, unknown role
        "Bearer " + jwt.encode({"sub": "x", "role": "pope", "region": COUNTY, "iat": int(time.time()),
                                "exp": int(time.time()) + 60, "iss": "lifeline"}, SECRET, algorithm="HS256"),
        # right secret, no exp
        "Bearer " + jwt.encode({"sub": "x", "role": "clerk", "region": COUNTY, "iat": int(time.time()),
                                "iss": "lifeline"}, SECRET, algorithm="HS256"),
        # alg=none is never accepted
        "Bearer " + jwt.encode({"sub": "x", "role": "admin", "region": "000000", "iat": int(time.time()),
                                "exp": int(time.time()) + 60, "iss": "lifeline"}, None, algorithm="none"),
    ],
)
def test_401_malformed_or_untrusted(client, header):
    assert_problem(client.get(f"/cases/{TOWNSHIP}", headers={"Authorization": header}), 401)


def test_403_wrong_role(client):
    r = client.get(f"/cases/{TOWNSHIP}", headers=bearer(role=Role.auditor))
    body = assert_problem(r, 403)
    assert body["type"] == "https://lifeline.example/problems/role-forbidden"
    assert body["allowed_roles"] == ["caseworker", "clerk"]


def test_403_other_region(client):
    r = client.get("/cases/320584101", headers=bearer(region=COUNTY))
    body = assert_problem(r, 403)
    assert body["type"] == "https://lifeline.example/problems/region-forbidden"
    # a township office cannot see its parent county or a sibling township
    assert_problem(client.get(f"/cases/{COUNTY}", headers=bearer(region=TOWNSHIP)), 403)
    assert_problem(client.get("/cases/320583102", headers=bearer(region=TOWNSHIP)), 403)
    # garbage region codes are simply out of scope
    assert_problem(client.get("/cases/banana", headers=bearer(region=COUNTY)), 403)


@pytest.mark.parametrize(
    ("region", "target"),
    [(COUNTY, TOWNSHIP), (COUNTY, VILLAGE), (COUNTY, COUNTY), (TOWNSHIP, VILLAGE),
     ("000000", VILLAGE), ("320000", TOWNSHIP)],
)
def test_200_right_region(client, region, target):
    r = client.get(f"/cases/{target}", headers=bearer(region=region, user_id="u-1"))
    assert r.status_code == 200, r.text
    assert r.json() == {"region": target, "user": "u-1", "role": "caseworker"}


def test_any_authenticated_role_and_defaults(client):
    r = client.get("/whoami", headers=bearer(role="bank_channel", region=COUNTY))
    assert r.json() == {"user": f"bank_channel@{COUNTY}", "org": COUNTY}


def test_token_claims():
    token = mint_token(SECRET, role=Role.clerk, region=TOWNSHIP, user_id="u-7", org_code="ORG-1", ttl_seconds=60)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="lifeline")
    assert {k: claims[k] for k in ("sub", "role", "region", "org", "iss")} == {
        "sub": "u-7", "role": "clerk", "region": TOWNSHIP, "org": "ORG-1", "iss": "lifeline"}
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_principal_helpers():
    p = Principal("u-1", Role.clerk, TOWNSHIP, "ORG")
    assert p.can_access(VILLAGE) and not p.can_access(COUNTY) and not p.can_access("")
    assert p.actor() == {"user_id": "u-1", "role": "clerk", "org_code": "ORG"}
    with pytest.raises(Problem) as info:
        ensure_region(p, "320583102001")
    assert info.value.status == 403


def test_refuses_empty_secret_and_unknown_roles():
    with pytest.raises(ValueError):
        Authenticator("")
    with pytest.raises(ValueError):
        mint_token("", role="clerk", region=COUNTY)
    with pytest.raises(ValueError):
        mint_token(SECRET, role="pope", region=COUNTY)
    with pytest.raises(ValueError):
        Authenticator(SECRET).require("pope")


# --- problem+json for everything else -----------------------------------------------
def test_problem_fields(client):
    body = assert_problem(client.get("/conflict"), 409)
    assert body == {
        "type": "https://lifeline.example/problems/case-closed", "title": "Case already closed",
        "status": 409, "detail": "Case c-1 was closed on 2026-03-01.", "instance": "/conflict",
        "case_id": "c-1",
    }


def test_problem_response_helper(client):
    r = client.get("/direct")
    body = assert_problem(r, 429)
    assert body["title"] == "Too Many Requests" and body["type"] == "about:blank"
    assert r.headers["retry-after"] == "3"


def test_404_and_405_are_problems(client):
    body = assert_problem(client.get("/nowhere"), 404)
    assert body["title"] == "Not Found"
    r = client.delete("/conflict")
    assert_problem(r, 405)
    assert "GET" in r.headers["allow"]


def test_500_does_not_leak(client):
    r = client.get("/crash")
    body = assert_problem(r, 500)
    assert "hunter2" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    assert body["title"] == "Internal Server Error"


def test_422_unknown_field_with_pointer(client):
    r = client.post("/cases", json={"region_code": VILLAGE, "members": [{"name": "张三", "age": 3, "ssn": "x"}],
                                    "secret_field": "张三的身份证"})
    body = assert_problem(r, 422)
    pointers = {e["pointer"]: e["detail"] for e in body["errors"]}
    assert "#/secret_field" in pointers and "#/members/0/ssn" in pointers
    assert "张三的身份证" not in r.text  # submitted values are not echoed


def test_422_type_errors_and_missing_fields(client):
    body = assert_problem(client.post("/cases", json={"members": [{"name": "a", "age": -1}]}), 422)
    pointers = {e["pointer"] for e in body["errors"]}
    assert pointers == {"#/region_code", "#/members/0/age"}


def test_422_malformed_json_and_query(client):
    r = client.post("/cases", content=b"{not json", headers={"content-type": "application/json"})
    body = assert_problem(r, 422)
    assert body["errors"][0]["pointer"] == "#"
    body = assert_problem(client.get("/limit", params={"n": "many"}), 422)
    assert body["errors"] == [{"parameter": "n", "in": "query", "detail": body["errors"][0]["detail"]}]


# --- body size -------------------------------------------------------------------------
def test_413_declared_content_length(client):
    r = client.post("/raw", content=b"x" * (MAX_BODY + 1))
    body = assert_problem(r, 413)
    assert body["max_bytes"] == MAX_BODY
    assert client.post("/raw", content=b"x" * MAX_BODY).json() == {"size": MAX_BODY}


def test_413_streamed_body_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b"y" * 200

    r = client.post("/raw", content=chunks())  # chunked: no Content-Length
    assert_problem(r, 413)
    r = client.post("/cases", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413)


def test_413_lying_content_length_is_still_cut_off():
    """A client declaring a small length but streaming more is stopped by counting."""
    app = build_app()
    sent: list[dict] = []
    chunks = [b"z" * 600, b"z" * 600, b""]

    async def receive():
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/raw", "raw_path": b"/raw", "query_string": b"",
             "headers": [(b"content-length", b"10")], "http_version": "1.1", "scheme": "http",
             "server": ("test", 80), "client": ("test", 1), "root_path": "", "asgi": {"version": "3.0"}}
    import asyncio

    asyncio.run(BodySizeLimit(app, max_bytes=MAX_BODY)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["status"] == 413
