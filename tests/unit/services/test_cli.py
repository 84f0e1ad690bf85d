"""`lifeline token` mints a bearer token the services' Authenticator accepts."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from lifeline import cli
from lifeline.http.auth import Authenticator, Role
from lifeline.http.problems import Problem
from lifeline.runtime.service import jwt_secret
from lifeline.settings import Settings

SECRET = "unit-test-jwt-secret-0123456789abcdef"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LIFELINE_JWT_SECRET", SECRET)
    monkeypatch.delenv("LIFELINE_JWT_ISSUER", raising=False)
    return tmp_path


def request_with(token: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"authorization", f"Bearer {token}".encode())]})


def mint(capsys, *args: str) -> str:
    assert cli.main(["token", *args]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count(".") == 2 and "\n" not in out  # one JWT, nothing else
    return out


def test_token_is_accepted_with_its_role_and_region(env, capsys):
    token = mint(capsys, "--role", "clerk", "--region", "370502101")
    principal = Authenticator(SECRET).principal(request_with(token))
    assert principal.role is Role.clerk
    assert principal.region == "370502101"
    assert principal.user_id == "clerk@370502101" and principal.org_code == "370502101"
    assert principal.can_access("370502101001") and not principal.can_access("370502102001")


def test_user_and_org_can_be_given(env, capsys):
    token = mint(capsys, "--role", "reviewer", "--region", "370502", "--user", "u-7", "--org", "ORG-1")
    principal = Authenticator(SECRET).principal(request_with(token))
    assert (principal.role, principal.user_id, principal.org_code) == (Role.reviewer, "u-7", "ORG-1")


def test_token_signed_with_another_secret_is_refused(env, capsys):
    token = mint(capsys, "--role", "clerk", "--region", "370502101")
    with pytest.raises(Problem) as refused:
        Authenticator("some-other-secret-0123456789-abcdefghij").principal(request_with(token))
    assert refused.value.status == 401


def test_expired_token_is_refused(env, capsys):
    token = mint(capsys, "--role", "clerk", "--region", "370502101", "--ttl", "-10")
    with pytest.raises(Problem) as refused:
        Authenticator(SECRET).principal(request_with(token))
    assert refused.value.status == 401


def test_unknown_role_fails_and_prints_no_token(env, capsys):
    assert cli.main(["token", "--role", "superuser", "--region", "370502101"]) == 2
    out = capsys.readouterr()
    assert out.out.strip() == "" and "unknown role" in out.err


def test_invalid_region_fails_and_prints_no_token(env, capsys):
    assert cli.main(["token", "--role", "clerk", "--region", "37A"]) == 2
    out = capsys.readouterr()
    assert out.out.strip() == "" and "37A" in out.err


def test_without_a_configured_secret_the_generated_one_is_used(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIFELINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LIFELINE_JWT_SECRET", raising=False)
    token = mint(capsys, "--role", "auditor", "--region", "370502")
    secret = jwt_secret(Settings.from_env())
    assert (tmp_path / "jwt.secret").exists()
    assert Authenticator(secret).principal(request_with(token)).role is Role.auditor


def test_serve_refuses_to_start_on_a_bad_register_file(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "2027.tsv").write_text("370599\t示例新区\tyes\t2027\t\n", encoding="utf-8")
    env = {**os.environ, "LIFELINE_REGIONS_DIR": str(tmp_path), "LIFELINE_DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "serve", "intake"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert f"{tmp_path / '2027.tsv'}:1: in_force must be 1 or 0" in r.stderr
