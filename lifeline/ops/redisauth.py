"""Who a Lifeline process is to Redis: the URL it connects with, and each service's ACL user.

The password travels in ``LIFELINE_REDIS_URL`` (``redis://lifeline-intake:PASSWORD@host:6379/0``;
an embedded Redis has one password and no user: ``redis://:PASSWORD@127.0.0.1:16379/0``). When the
URL carries no password and ``<data_dir>/redis.secret`` exists, the process uses that: it is the
password `lifeline up` generated for its embedded Redis.

Each service's Redis keys start with ``<namespace><service>:`` (``intake:idem:...``,
``t3f9a1.notify:ratelimit:objections:...``), so an ACL user per service can be limited to its own
keys and to the few commands Lifeline's code sends (`service_acl`)::

    lifeline redis-users --out secrets/redis --host redis:6379

writes ``users.acl`` (for ``redis-server --aclfile``: the default user off, ``lifeline-<service>``
per service, passwords as SHA-256 only) and ``<service>.env`` (``LIFELINE_REDIS_URL`` with the
service's password, 0600).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from lifeline.settings import SERVICES, Settings
from lifeline.stores.sealing import generated_secret

SECRET_FILE = "redis.secret"
# Every command Lifeline's code sends, scripts' redis.call included (lifeline/http/idempotency.py,
# lifeline/http/ratelimit.py, the readiness PING): a service user may run these and no other.
# A new command in the code belongs here too, or the service is refused (NOPERM) on real Redis.
COMMANDS = ("get", "set", "del", "eval", "evalsha", "incr", "expire", "pexpire", "ttl", "ping", "select")
# Characters a generated password uses, and all a password may use in a Redis config line.
_SAFE = re.compile(r"[A-Za-z0-9_.~-]+")


def user_of(service: str) -> str:
    return f"lifeline-{service}"


def key_namespace(namespace: str, service: str) -> str:
    """What every Redis key of `service` starts with, before ``:`` (its ACL key pattern's root)."""
    return f"{namespace}{service}"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def check_password(password: str) -> str:
    if not _SAFE.fullmatch(password):
        raise ValueError("a Redis password here is letters, digits and _.~- only")
    return password


def redis_secret(data_dir: Path) -> str:
    """The embedded Redis's password, generated once in ``<data_dir>/redis.secret`` (0600)."""
    return generated_secret(Path(data_dir) / SECRET_FILE, new_password)


def without_credentials(url: str) -> str:
    """`url` with no user or password in it."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_credentials(url: str, password: str, user: str = "") -> str:
    """`url` with `user` and `password` in it (any it held replaced)."""
    parts = urlsplit(without_credentials(url))
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password else None


def redis_url(settings: Settings) -> str:
    """The URL this process connects to Redis with: LIFELINE_REDIS_URL, plus the embedded
    Redis's password from the data directory when the URL carries none."""
    if url_password(settings.redis_url):
        return settings.redis_url
    path = settings.data_dir / SECRET_FILE
    if not path.is_file():
        return settings.redis_url
    return with_credentials(settings.redis_url, path.read_text().strip(), urlsplit(settings.redis_url).username or "")


def masked(url: str) -> str:
    """`url` fit to print: its password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return with_credentials(url, "PASSWORD", parts.username or "").replace(":PASSWORD@", ":***@")


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def service_acl(service: str, password: str, namespace: str = "") -> str:
    """The ACL line of `service`'s user: its own keys (``<namespace><service>:*``; namespace ``*``
    for a Redis shared by many namespaces, as the tests' is) and Lifeline's commands only."""
    commands = " ".join(f"+{c}" for c in COMMANDS)
    return (f"user {user_of(service)} on #{password_hash(password)} resetkeys "
            f"~{key_namespace(namespace, service)}:* resetchannels -@all {commands}")


# The default user can do nothing: every client names its user.
DEFAULT_OFF = "user default off resetpass resetkeys resetchannels -@all"


def acl_file(passwords: dict[str, str], namespace: str = "", admin_password: str | None = None) -> str:
    """An ACL file: the default user off, a user per service (`passwords`: service -> password)
    and, with `admin_password`, ``lifeline-admin`` with every key and command (operators, tests)."""
    lines = [DEFAULT_OFF]
    if admin_password:
        lines.append(f"user lifeline-admin on #{password_hash(admin_password)} ~* &* +@all")
    lines += [service_acl(service, password, namespace) for service, password in passwords.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path` with `mode` from the start (a file that existed is narrowed too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(text)


def write_users(out: Path, host: str, namespace: str = "", db: int = 0) -> dict[str, str]:
    """users.acl and one <service>.env per service in `out` (0700), new passwords each time."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    passwords = {service: new_password() for service in SERVICES}
    # The ACL file holds SHA-256 hashes of random 256-bit passwords only: Redis's own user in its
    # container must read it, so it is 0644 (its directory keeps it from other users here).
    write_private(out / "users.acl", acl_file(passwords, namespace), 0o644)
    for service, password in passwords.items():
        url = with_credentials(f"redis://{host}/{db}", password, user_of(service))
        write_private(out / f"{service}.env", f"LIFELINE_REDIS_URL={url}\n")
    return passwords
