"""No secret or key in any log line (issue 16): what a leak looks like, and every log to look in.

Whatever starts Lifeline processes for a test registers their data directory and environment
(`register`: tests/harness.py's Lifeline, test_up's `lifeline up`, the shared infrastructure);
at the end of the session tests/conftest.py scans every log under them (`registered_leaks`).
A leak is named by file, line and kind, never by quoting the secret.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

# A bearer token: a JWT's header and payload are base64url JSON, so both start with "eyJ".
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")
PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|CIPHER_KEY|TOKEN")
# Shorter values are no secrets worth the name, and would match by chance (the tests'
# PostgreSQL password is the well-known "lifeline").
MIN_SECRET = 12

_REGISTERED: list[tuple[Path, Mapping[str, str]]] = []
_FOUND: list[str] = []


def register(root: Path, env: Mapping[str, str]) -> None:
    """Scan the logs under `root` at the session's end, for the secrets of `env` (read then: the
    caller may add to it) and of the data directory `root` (*.secret files, keys/*.ed25519)."""
    _REGISTERED.append((Path(root), env))


def secrets_of(root: Path, env: Mapping[str, str]) -> dict[str, str]:
    """kind -> secret value: env values named like secrets, passwords in URLs, the generated
    secret files, and private keys (their PEM lines and their raw bytes encoded)."""
    found: dict[str, str] = {}
    for name, value in env.items():
        if SECRET_NAMES.search(name) and not value.startswith("/"):  # a path names a secret's file
            found[name] = value
        if "://" in value:
            password = urlsplit(value).password
            if password:
                found[f"password in {name}"] = unquote(password)
    for path in root.glob("*.secret"):
        found[path.name] = path.read_text(errors="replace").strip()
    keys = [root / "keys", *([Path(env["LIFELINE_KEYS_DIR"])] if env.get("LIFELINE_KEYS_DIR") else [])]
    for key_dir in keys:
        for path in key_dir.glob("*.ed25519"):
            for i, line in enumerate(path.read_text(errors="replace").splitlines()):
                if not line.startswith("-----"):
                    found[f"{path.name} line {i + 1}"] = line.strip()
            # The 32 secret bytes themselves, as a careless log line might print them.
            seed = _seed(path)
            if seed:
                found[f"{path.name} (base64)"] = base64.b64encode(seed).decode().rstrip("=")
                found[f"{path.name} (base64url)"] = base64.urlsafe_b64encode(seed).decode().rstrip("=")
                found[f"{path.name} (hex)"] = seed.hex()
    return {kind: value for kind, value in found.items() if len(value) >= MIN_SECRET}


def _seed(path: Path) -> bytes | None:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    except (OSError, ValueError, TypeError):
        return None


def log_files(root: Path) -> list[Path]:
    """Every log under `root`: the logs/ directory of a data dir, and *.log files elsewhere
    (not a Kafka broker's log segments, which hold messages, not log lines)."""
    files = {p for p in (root / "logs").rglob("*") if p.is_file()}
    files.update(p for p in root.rglob("*.log") if p.is_file() and "kafka-logs" not in p.parts)
    return sorted(files)


def leaks(files: Iterable[Path], secrets: Mapping[str, str]) -> list[str]:
    """`file:line: kind` for each log line holding a secret, a private key or a bearer token."""
    found = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        # Whole-file checks first: lines are only split when something is there.
        present = {kind: value for kind, value in secrets.items() if value in text}
        if not present and not JWT.search(text) and not PEM.search(text):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            kinds = [kind for kind, value in present.items() if value in line]
            if JWT.search(line):
                kinds.append("a bearer token (JWT)")
            if PEM.search(line):
                kinds.append("a private key (PEM)")
            found += [f"{path}:{n}: {kind}" for kind in kinds]
    return found


def scan_now(root: Path, env: Mapping[str, str]) -> None:
    """Scan `root` at once, for a directory removed before the session ends (the shared
    infrastructure's); what it finds is reported with the rest."""
    _FOUND.extend(leaks(log_files(root), secrets_of(root, env)))


def registered_leaks() -> list[str]:
    """Every registered root's logs, each against its own secrets, and what scan_now found."""
    found: list[str] = list(_FOUND)
    for root, env in _REGISTERED:
        if root.exists():
            found += leaks(log_files(root), secrets_of(root, env))
    return found
