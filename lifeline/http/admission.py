"""Admission control: a service answers what it can and sheds the rest at once.

Offered more than it can serve, a server that takes everything queues it: every answer gets
later, clients time out and retry, and the queue only grows. Here a service holds at most
LIFELINE_MAX_IN_FLIGHT requests at a time; one more is answered at once with 503 problem+json and
`Retry-After`, before its body is read, so it costs almost nothing and nothing of it is stored. The
connection stays open (keep-alive): a shed request is an answer, never a reset. Health, readiness
and metrics are always answered (an orchestrator must see a busy service as alive).

The same middleware counts every answer by status (lifeline_http_requests_total) and the shed
ones (lifeline_http_shed_total), as a pure ASGI layer (Starlette's BaseHTTPMiddleware cost a
fifth of a request's time).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeline.http.problems import problem_response
from lifeline.ops.metrics import HTTP_REQUESTS, SHED

ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_SECONDS = 1


class Admission:
    def __init__(self, app: ASGIApp, *, service: str, max_in_flight: int):
        self.app = app
        self.service = service
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if self.in_flight >= self.max_in_flight and scope.get("path") not in ALWAYS_ANSWERED:
            SHED.labels(self.service).inc()
            HTTP_REQUESTS.labels(self.service, method, "503").inc()
            await problem_response(
                503, "At capacity", "This service is answering as many requests as it can; retry shortly.",
                slug="at-capacity", headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )(scope, receive, send)
            return
        status = "500"

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.in_flight -= 1
            HTTP_REQUESTS.labels(self.service, method, status).inc()
