"""Bearer-token authentication, roles and region scoping (SPEC §6).

Tokens are HS256 JWTs with ``sub``, ``role``, ``region``, ``org``, ``iat``,
``exp``, ``iss``. An office sees its own division only: a principal of region
``320583`` (a county) may act on ``320583101`` (a township in it) and
``320583101001`` (a village in it), ``000000`` is the whole country.

    auth = Authenticator(settings.jwt_secret, settings.jwt_issuer)

    @app.post("/cases")
    def create(body: NewCase, who: Principal = auth.require(Role.clerk, Role.caseworker)):
        ensure_region(who, body.region_code)
        ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from fastapi import Depends, Request

from lifeline.http.problems import Problem
from lifeline.rules.regions import InvalidRegionCode, region_contains, validate_scope

ALGORITHM = "HS256"
# How many verified tokens an API process remembers (until each expires).
VERIFIED_TOKENS = 10_000
_REQUIRED_CLAIMS = ["sub", "role", "region", "iat", "exp", "iss"]


class Role(StrEnum):
    # StrEnum: f"{role}" and str(role) give the plain value (a (str, Enum) would
    # format as "Role.clerk" on Python 3.11).
    clerk = "clerk"
    caseworker = "caseworker"
    reviewer = "reviewer"
    county_officer = "county_officer"
    auditor = "auditor"
    partner = "partner"
    charity_federation = "charity_federation"
    bank_channel = "bank_channel"
    # A registered service provider (issue 17): its token's user is its provider id, its
    # region its county; it reports deliveries of its own orders and sees only those.
    provider = "provider"
    admin = "admin"


# The civil-affairs staff who may read a household's case in any service (within their region).
CASE_READERS = ("clerk", "caseworker", "reviewer", "county_officer", "auditor", "admin")


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value!r}") from None


def _check_secret(secret: str) -> None:
    # An empty secret would make every token forgeable; refuse to run that way.
    if not secret:
        raise ValueError("JWT secret is empty: set LIFELINE_JWT_SECRET")


def mint_token(
    secret: str,
    *,
    role: Role | str,
    region: str,
    user_id: str | None = None,
    org_code: str | None = None,
    ttl_seconds: int = 8 * 3600,
    issuer: str = "lifeline",
    now: int | None = None,
) -> str:
    """Issue a signed token. ``user_id`` defaults to ``<role>@<region>``, ``org_code`` to the region.

    ``now`` (epoch seconds) is for tests that need expired tokens.
    """
    _check_secret(secret)
    role = _role(role)
    validate_scope(region)
    issued = int(time.time()) if now is None else int(now)
    claims = {
        "sub": user_id or f"{role.value}@{region}",
        "role": role.value,
        "region": region,
        "org": org_code or region,
        "iat": issued,
        "exp": issued + int(ttl_seconds),
        "iss": issuer,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: Role
    region: str
    org_code: str

    def can_access(self, region_code: str) -> bool:
        """True when ``region_code`` lies within this principal's region; False for malformed codes."""
        try:
            return region_contains(self.region, region_code)
        except (InvalidRegionCode, TypeError):
            return False

    def actor(self) -> dict[str, str]:
        """The CloudEvents ``actor`` extension for events this principal causes."""
        return {"user_id": self.user_id, "role": self.role.value, "org_code": self.org_code}


def ensure_region(principal: Principal, region_code: str) -> None:
    """403 unless the principal's region contains ``region_code``."""
    if not principal.can_access(region_code):
        raise Problem(
            403, "Outside your region", "This resource belongs to a division outside your region.",
            slug="region-forbidden",
        )


def _unauthorized(detail: str, error: str | None = "invalid_token") -> Problem:
    # RFC 6750 §3: no error code when the request carried no credentials at all.
    challenge = 'Bearer realm="lifeline"'
    if error:
        challenge += f', error="{error}", error_description="{detail}"'
    return Problem(401, "Unauthorized", detail, slug="unauthorized",
                   headers={"WWW-Authenticate": challenge})


class Authenticator:
    def __init__(self, secret: str, issuer: str = "lifeline", *, leeway_seconds: int = 0):
        _check_secret(secret)
        self._secret = secret
        self.issuer = issuer
        self.leeway = leeway_seconds
        # Tokens verified already, with their expiry: a clerk's token comes with every request of
        # the day, and checking its signature again was an eighth of an application's CPU.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def principal(self, request: Request) -> Principal:
        """The authenticated caller, or Problem(401) with a WWW-Authenticate challenge."""
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized("A bearer token is required.", error=None)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Authorization must be 'Bearer <token>'.", error="invalid_request")
        principal = self.verify(token.strip())
        request.state.principal = principal  # for access logs
        return principal

    def verify(self, token: str) -> Principal:
        """The principal a bearer token names, or Problem(401): for the console's sign-in too."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1] + self.leeway:
            return known[0]
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=self.issuer,
                leeway=self.leeway, options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("The token has expired.") from None
        except jwt.InvalidTokenError:
            # One message for bad signature, issuer, format...: do not help forgers.
            raise _unauthorized("The token is invalid.") from None
        try:
            role = _role(claims["role"])
            region = validate_scope(claims["region"])
            user_id = str(claims["sub"])
        except (ValueError, TypeError):
            raise _unauthorized("The token is invalid.") from None
        principal = Principal(user_id=user_id, role=role, region=region,
                              org_code=str(claims.get("org") or region))
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    def require(self, *roles: Role | str) -> Any:
        """FastAPI dependency: the Principal, or 403 if its role is not among ``roles``.

        With no roles any authenticated caller passes. ``admin`` is not implied:
        list it where it belongs (least privilege).
        """
        allowed = frozenset(_role(r) for r in roles)

        # async: a token check is a few microseconds of CPU, not worth a trip to the thread pool.
        async def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if allowed and principal.role not in allowed:
                raise Problem(
                    403, "Role not allowed",
                    f"Role '{principal.role.value}' may not do this.",
                    slug="role-forbidden",
                    allowed_roles=sorted(r.value for r in allowed),
                )
            return principal

        return Depends(dependency)


__all__ = ["CASE_READERS", "Authenticator", "Principal", "Role", "ensure_region", "mint_token"]
