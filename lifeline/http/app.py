"""The HTTP edge of a service: health, metrics, problem+json, region checks.

`create_http_app` puts a service's API, the operations endpoints and the error
handling in front of its `ServiceRuntime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lifeline.audit.asof import AsOf, not_in_future
from lifeline.contracts.envelope import ContractError
from lifeline.http.auth import Principal, ensure_region
from lifeline.http.hardening import harden
from lifeline.http.admission import Admission
from lifeline.http.problems import PROBLEM_JSON, BodySizeLimit, Problem, install_problem_handlers
from lifeline.ops.metrics import REGISTRY
from lifeline.rules.ids import InvalidResidentId, parse_resident_id
from lifeline.rules.regions import InvalidRegionCode, region_contains, validate_region_code
from lifeline.runtime.service import ServiceRuntime, ServiceSpec
from lifeline.settings import Settings

log = logging.getLogger(__name__)


# --- documented response shapes --------------------------------------------------------
class ProblemError(BaseModel):
    """One entry of a 422's ``errors`` (lifeline.http.problems.validation_errors)."""

    pointer: str | None = Field(None, description="JSON pointer into the body, e.g. #/members/0/id_number")
    parameter: str | None = Field(None, description="the query or path parameter at fault")
    header: str | None = Field(None, description="the header at fault")
    in_: str | None = Field(None, alias="in", description="query, path, header or cookie")
    detail: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, sent as application/problem+json (lifeline.http.problems)."""

    # Open-ended on purpose: RFC 9457 extension members (errors, allowed_roles, max_bytes, ...)
    # differ from one problem to the next.
    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="about:blank or https://lifeline.example/problems/<slug>")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="the request path")
    errors: list[ProblemError] | None = Field(None, description="422 validation failures, values never echoed")
    request_id: str | None = Field(None, description="the request's X-Request-Id, as in the service's log lines")


PROBLEM_REF = "#/components/schemas/Problem"
_PROBLEM_TEXT = {
    400: "Malformed request (e.g. an invalid Idempotency-Key or Content-Length)",
    401: "No valid bearer token",
    403: "Role not allowed, or the resource lies outside the caller's region",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "The request does not match the expected shape or the event contract",
    429: "Too many requests from this address; retry after Retry-After",
    503: "A backing store is unreachable; retry after Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for errors, all application/problem+json (see ProblemDetails)."""
    return {
        status: {
            "description": _PROBLEM_TEXT.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        for status in statuses
    }


def _problem_schemas() -> dict[str, Any]:
    """ProblemDetails and what it refers to, as OpenAPI components."""
    schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "Problem": schema}


class Health(BaseModel):
    status: Literal["ok"]
    service: str = Field(description="the service's name, e.g. intake")


class ReadinessChecks(BaseModel):
    event_store: str = Field(description='"ok" or "error: ..."')
    kafka: str = Field(description='"ok" or "starting"')
    redis: str = Field(description='"ok" or "error: ..."')


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: ReadinessChecks


class MetricsResponse(PlainTextResponse):
    """Prometheus text exposition format."""

    media_type = "text/plain; version=0.0.4"


def found_in_region(
    load: Callable[[str], Any], ident: str, missing: type[LookupError], what: str, principal: Principal
) -> Any:
    """`load(ident)`, or 404 when `missing` is raised; 403 when it lies outside the caller's region."""
    try:
        found = load(ident)
    except missing:
        raise Problem(404, f"{what} not found", f"no {what.lower()} {ident}") from None
    ensure_region(principal, found.region_code)
    return found


# The problem+json answers routes document, by what they do.
def strict(*examples: dict) -> ConfigDict:
    """A request body's config: unknown fields refused, strings stripped, valid examples shown."""
    return ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": list(examples)})


READ_ERRORS = problem_responses(401, 403, 404, 422, 503)        # read one resource
LIST_ERRORS = problem_responses(401, 403, 422, 503)             # list a case's documents
CREATE_ERRORS = problem_responses(400, 401, 403, 409, 413, 422, 503)   # POST a new resource
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 503)  # POST to one

CaseId = Annotated[str, Query(min_length=3, max_length=64)]


def _resident_id(value: str) -> str:
    try:
        return parse_resident_id(value.upper()).number
    except InvalidResidentId as exc:
        raise ValueError(f"invalid resident ID number: {exc}") from exc


# A GB 11643 resident ID number in a request body: form and check digit verified, `x` read as `X`.
ResidentIdNumber = Annotated[str, Field(min_length=18, max_length=18), AfterValidator(_resident_id)]


def region_filter(region: str | None, principal: Principal) -> str | None:
    """A `?region=` narrowing a listing: a known division code (422) within the caller's (403)."""
    if region is None:
        return None
    try:
        validate_region_code(region)
    except InvalidRegionCode:
        raise Problem(422, "Request validation failed", "region is not a known division code.",
                      slug="validation",
                      errors=[{"parameter": "region", "in": "query",
                               "detail": "not a GB/T 2260 division code"}]) from None
    ensure_region(principal, region)
    return region


def in_region(docs: list[dict[str, Any]], principal: Principal, region: str | None) -> list[dict[str, Any]]:
    """The read-model documents the caller may see, narrowed to `region` when given."""
    return [d for d in docs if principal.can_access(d["region_code"])
            and (region is None or region_contains(region, d["region_code"]))]


def add_case_items_route(
    api: APIRouter, runtime: ServiceRuntime, path: str, kind: str, doc: type[BaseModel],
    readers: tuple[str, ...], as_of_items: Callable[[str, datetime], list[dict[str, Any]]] | None = None,
) -> None:
    """`GET path?case_id=`: a case's read-model documents of one kind, within the caller's
    region (payment's entitlements, charity's needs, notify's notices). With `as_of_items(case_id,
    moment)` (the documents as they stood then, rebuilt from events: lifeline/audit/asof.py) the
    route takes `?as_of=` too."""
    # The answer's model, named after the path (Entitlements, Needs, Notices).
    listing = create_model(
        path.strip("/").capitalize(), case_id=(str, ...),
        items=(list[doc], Field(description="those within the caller's region")),
    )

    if as_of_items is None:
        async def list_items(case_id: CaseId, principal: Principal = runtime.auth.require(*readers)):
            return await runtime.items_of_case(kind, case_id, principal)
    else:
        async def list_items(case_id: CaseId, as_of: AsOf = None,
                             principal: Principal = runtime.auth.require(*readers)):
            if as_of is None:
                return await runtime.items_of_case(kind, case_id, principal)
            not_in_future(as_of, runtime.clock)
            await runtime.views()  # which records exist now: the rebuild reads their ids only
            docs = await asyncio.to_thread(as_of_items, case_id, as_of)
            return {"case_id": case_id, "items": [d for d in docs if principal.can_access(d["region_code"])]}

    api.add_api_route(
        path, list_items, methods=["GET"], name=f"list_{kind}s", tags=[path.strip("/")],
        response_model=listing, responses=LIST_ERRORS,
    )


def lifespan_of(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]):
    """A FastAPI lifespan that starts a process's background parts and stops them after."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await start()
        try:
            yield
        finally:
            await stop()

    return lifespan


def idempotent_id(prefix: str, principal_id: str, key: str | None) -> str | None:
    """A business id derived from the Idempotency-Key: even if Redis forgot the
    key, the event store refuses a second aggregate with the same id."""
    if not key:
        return None
    digest = hashlib.sha256(f"{principal_id}\0{key}".encode()).hexdigest()[:20].upper()
    return f"{prefix}-{digest}"


def create_http_app(spec: ServiceSpec, settings: Settings, runtime: ServiceRuntime | None = None) -> FastAPI:
    runtime = runtime or ServiceRuntime(spec, settings)

    app = FastAPI(
        title=spec.title or f"Lifeline {spec.name}",
        version="1.0.0",
        lifespan=lifespan_of(runtime.start, runtime.stop),
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Routes refer to the problem+json schema by $ref; put it among the components once.
        if app.openapi_schema is None:
            schema = default_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_problem_schemas())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ContractError)
    async def contract_error(request: Request, exc: ContractError):
        # Input that passed the API model but not the event's schema: still the
        # caller's to fix, and nothing was stored.
        return Problem(422, "Request does not fit the event contract", str(exc)).response(str(request.url.path))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(StoreOperationalError)
    @app.exception_handler(StoreInterfaceError)
    async def dependency_down(request: Request, exc: Exception):
        # A store or Redis is unreachable: nothing was decided, the caller may retry.
        log.warning("%s: dependency unavailable: %r", spec.name, exc)
        return Problem(
            503, "Service temporarily unavailable", "A backing store is unreachable; retry shortly.",
            headers={"Retry-After": "5"},
        ).response(str(request.url.path))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Health:
        return Health(status="ok", service=spec.name)

    @app.get(
        "/readyz", tags=["operations"], response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: a check is not ok"}},
    )
    async def readyz():
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=MetricsResponse)
    async def metrics():
        return MetricsResponse(generate_latest(REGISTRY))

    app.include_router(spec.router(runtime))
    from lifeline.audit.routes import router as audit_router  # here: it builds on this module

    app.include_router(audit_router(runtime))  # the auditor's read API, the same on every service
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       upload_paths=spec.upload_paths, max_upload_bytes=settings.max_upload_bytes)
    # Outermost but for hardening: a request over capacity is shed before anything reads it.
    app.add_middleware(Admission, service=spec.name, max_in_flight=settings.max_in_flight)
    return harden(app, settings)
