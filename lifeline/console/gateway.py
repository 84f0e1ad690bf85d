"""The console's only way to data: the services' public APIs, called with the signed-in person's
token. The console keeps nothing of its own, so every check (role, region, four eyes, the
procedure's rules) stays where it is enforced: in the service that answers.

Two failures a page must tell apart (issue 15, "bad input" and "a service is down"):

- `ServiceProblem`: the service answered with problem+json (4xx): the person's to fix. Its
  `field_errors()` maps each error the service named (a JSON pointer or a query parameter) to the
  form field of the same path, so the page shows the message next to that field.
- `ServiceDown`: the service did not answer (refused, timed out, 502/503/504): nothing was decided,
  the page keeps what was typed and names the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from lifeline.settings import SERVICES, Settings

# The statuses that mean "not answered": the request may be sent again as it is.
_NOT_ANSWERED = {502, 503, 504}


def service_urls(settings: Settings) -> dict[str, str]:
    return {name: getattr(settings, f"{name}_url") for name in SERVICES}


@dataclass
class ServiceDown(Exception):
    service: str
    detail: str

    def __str__(self) -> str:
        return f"{self.service}: {self.detail}"


@dataclass
class ServiceProblem(Exception):
    service: str
    status: int
    problem: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.service} {self.status}: {self.title}: {self.detail}"

    @property
    def title(self) -> str:
        return str(self.problem.get("title") or f"HTTP {self.status}")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or "")

    @property
    def rule(self) -> str | None:
        return self.problem.get("rule")

    def field_errors(self) -> dict[str, str]:
        """{form field: message} for each error the service named, the field written as its JSON
        path with dots ("members.0.id_number"); a `field` the problem names counts too."""
        out: dict[str, str] = {}
        for err in self.problem.get("errors") or []:
            if not isinstance(err, dict):
                continue
            name = field_name(err)
            if name:
                out.setdefault(name, str(err.get("detail") or self.detail))
        named = self.problem.get("field")
        if isinstance(named, str) and named:
            out.setdefault(named.replace("/", ".").strip("."), self.detail)
        return out


def field_name(error: dict[str, Any]) -> str | None:
    """The form field an RFC 9457 error entry names: "#/members/0/id_number" → "members.0.id_number"."""
    pointer = error.get("pointer")
    if isinstance(pointer, str) and pointer.startswith("#"):
        parts = [unquote(p).replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/") if p]
        return ".".join(parts) or None
    parameter = error.get("parameter")
    return parameter if isinstance(parameter, str) and parameter else None


class Gateway:
    """One pooled HTTP client per service, shared by every request of the console."""

    def __init__(self, urls: dict[str, str], *, timeout: float = 15.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.urls = dict(urls)
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport)
            for name, url in self.urls.items()
        }

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def send(self, service: str, method: str, path: str, token: str | None, *,
                   json: Any = None, params: dict[str, Any] | None = None,
                   key: str | None = None, forwarded_for: str | None = None) -> httpx.Response:
        """The service's answer when it answered 2xx; else ServiceProblem or ServiceDown.

        `forwarded_for`: the visitor's address on a public page, so that a service's per-address
        limits (the notice board's) count each visitor, not the console (the service trusts it
        from the console's address only: uvicorn's FORWARDED_ALLOW_IPS, docs/CONSOLE.md)."""
        headers = {"accept": "application/json, application/problem+json"}
        if forwarded_for:
            headers["x-forwarded-for"] = forwarded_for
        if token:
            headers["authorization"] = f"Bearer {token}"
        if key:
            headers["idempotency-key"] = key
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._clients[service].request(method, path, json=json, params=clean,
                                                            headers=headers)
        except httpx.TransportError as exc:
            raise ServiceDown(service, type(exc).__name__) from None
        if response.status_code in _NOT_ANSWERED:
            raise ServiceDown(service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"title": f"HTTP {response.status_code}", "detail": response.text[:200]}
            raise ServiceProblem(service, response.status_code, body if isinstance(body, dict) else {})
        return response

    async def get(self, service: str, path: str, token: str | None, *, forwarded_for: str | None = None,
                  **params: Any) -> Any:
        return (await self.send(service, "GET", path, token, params=params, forwarded_for=forwarded_for)).json()

    async def post(self, service: str, path: str, token: str | None, json: Any = None, *,
                   key: str | None = None, forwarded_for: str | None = None) -> Any:
        response = await self.send(service, "POST", path, token, json=json, key=key, forwarded_for=forwarded_for)
        return response.json() if response.content else None

    async def put(self, service: str, path: str, token: str | None, json: Any = None, *,
                  key: str | None = None) -> Any:
        response = await self.send(service, "PUT", path, token, json=json, key=key)
        return response.json() if response.content else None
