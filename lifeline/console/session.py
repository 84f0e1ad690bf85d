"""Who is signed in: the bearer token in a cookie, verified as the services verify it.

The cookie holds the token itself (HttpOnly, SameSite=Strict, Secure over TLS): the console keeps
no session store, and every call it makes carries the person's own token, so a service answers
the console exactly as it would answer that person (issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from lifeline.http.auth import Authenticator, Principal, Role
from lifeline.http.problems import Problem

SESSION_COOKIE = "lifeline_console"

# The roles a person signs in to the console as, in the order the sign-in list shows them.
CONSOLE_ROLES = ("clerk", "caseworker", "reviewer", "county_officer", "auditor", "charity_federation", "admin")


@dataclass(frozen=True)
class User:
    token: str
    principal: Principal

    @property
    def role(self) -> str:
        return self.principal.role.value

    @property
    def region(self) -> str:
        return self.principal.region

    @property
    def user_id(self) -> str:
        return self.principal.user_id


class SignInRequired(Exception):
    """No valid session: the page sends the person to sign in, then back."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


class NotForRole(Exception):
    """Signed in, but this screen belongs to other roles."""

    def __init__(self, role: str, roles: tuple[str, ...]):
        super().__init__(role)
        self.role = role
        self.roles = roles


def signed_in(request: Request) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    auth: Authenticator = request.app.state.authenticator
    try:
        return User(token, auth.verify(token))
    except Problem:
        return None


def verify(request: Request, token: str) -> User:
    """The user a token names, or Problem(401) with the reason (expired, invalid)."""
    return User(token, request.app.state.authenticator.verify(token))


def role_user(*roles: str) -> Any:
    """A page's dependency: the signed-in user of one of `roles` (admin sees every screen)."""
    allowed = tuple(Role(r).value for r in roles)

    async def dependency(request: Request) -> User:
        user = signed_in(request)
        if user is None:
            raise SignInRequired("expired" if request.cookies.get(SESSION_COOKIE) else "")
        if roles and user.role not in allowed and user.role != "admin":
            raise NotForRole(user.role, allowed)
        request.state.user = user
        return user

    return Depends(dependency)


AnyUser = Annotated[User, role_user()]
