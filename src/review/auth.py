"""Who is reviewing, and proof that a POST came from our own page.

Two modes, chosen explicitly when the server starts:

- tokens (`--tokens FILE`): each reviewer has a secret token, given once on the login page. The
  file holds one reviewer per line, `NAME TOKEN [ROLE]` (ROLE `reviewer`, the default, or
  `adjudicator`, who may settle disagreements); `#` starts a comment. `reportguard review tokens
  NAME...` writes one with fresh random tokens. Tokens are compared as SHA-256 digests in
  constant time.
- local-only (`--local-only`): anyone who can reach the server types a name. That is only safe
  when nobody else can reach it, so the server refuses to bind anything but a loopback address in
  this mode, and rejects requests whose Host header is not a loopback name (a DNS-rebinding page
  on another site would otherwise reach it through the reviewer's browser).

A session is a cookie `NAME|ROLE|NONCE|ISSUED|HMAC` signed with a key that lives only in the
server process (or $REPORTGUARD_REVIEW_SECRET, to survive restarts and span workers); it is
HttpOnly and SameSite=Strict. CSRF: every form carries HMAC(key, "csrf" + NONCE), which a page on
another origin cannot read or compute; the login form, before any session exists, uses a
double-submit cookie instead. POSTs whose Origin header names another host are refused as well.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("reviewer", "adjudicator")
SESSION_COOKIE = "rg_session"
LOGIN_COOKIE = "rg_login"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_CHARS = 16
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class AuthError(Exception):
    """Login or request refused; the message is safe to show."""


@dataclass(frozen=True)
class Reviewer:
    name: str
    role: str
    nonce: str

    @property
    def can_adjudicate(self) -> bool:
        return self.role == "adjudicator"


def read_tokens(path: str | Path) -> dict[str, tuple[str, str]]:
    """sha256(token) -> (name, role) from a tokens file; raises ValueError on a bad line."""
    path = Path(path)
    table: dict[str, tuple[str, str]] = {}
    names = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise ValueError(f"{path}:{number}: expected `NAME TOKEN [ROLE]`")
        name, token, role = parts[0], parts[1], parts[2] if len(parts) == 3 else "reviewer"
        if role not in ROLES:
            raise ValueError(f"{path}:{number}: role must be one of {ROLES}, not {role!r}")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{path}:{number}: token for {name} is shorter than {MIN_TOKEN_CHARS} characters")
        if name in names:
            raise ValueError(f"{path}:{number}: reviewer {name} listed twice")
        names.add(name)
        table[_digest(token)] = (name, role)
    if not table:
        raise ValueError(f"{path}: no reviewers")
    return table


def write_tokens(path: str | Path, names: list[str], adjudicators: list[str] = ()) -> dict[str, str]:
    """Append fresh tokens for `names` to a tokens file (mode 0600); returns name -> token."""
    path = Path(path)
    made = {}
    lines = []
    for name in names:
        if not name or any(c.isspace() for c in name) or "#" in name:
            raise ValueError(f"reviewer name {name!r} must be one word without '#'")
        made[name] = secrets.token_urlsafe(24)
        lines.append(f"{name} {made[name]} {'adjudicator' if name in adjudicators else 'reviewer'}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.writelines(lines)
    return made


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def host_name(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:8765' -> '[::1]'."""
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Auth:
    def __init__(self, tokens: dict[str, tuple[str, str]] | None = None, local_only: bool = False,
                 secret: bytes | None = None):
        if bool(tokens) == bool(local_only):
            raise ValueError("choose exactly one of: reviewer tokens (--tokens FILE) or --local-only")
        self.tokens = tokens or {}
        self.local_only = local_only
        env_secret = os.environ.get("REPORTGUARD_REVIEW_SECRET", "")
        self.secret = secret or (env_secret.encode() if env_secret else secrets.token_bytes(32))

    # -- login ------------------------------------------------------------------------------

    def login(self, name: str = "", token: str = "") -> Reviewer:
        """A reviewer for these credentials, or AuthError."""
        if self.local_only:
            name = " ".join((name or "").split())
            if not name or len(name) > 100 or "|" in name:
                raise AuthError("Type your name (up to 100 characters, no '|').")
            return Reviewer(name, "adjudicator", secrets.token_hex(16))
        digest = _digest(token or "")
        for known, (who, role) in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return Reviewer(who, role, secrets.token_hex(16))
        raise AuthError("Unknown token.")

    # -- sessions ---------------------------------------------------------------------------

    def session_cookie(self, reviewer: Reviewer, now: float | None = None) -> str:
        name = base64.urlsafe_b64encode(reviewer.name.encode("utf-8")).decode("ascii")
        payload = f"{name}|{reviewer.role}|{reviewer.nonce}|{int(now or time.time())}"
        return f"{payload}|{self._sign(payload)}"

    def reviewer_from(self, cookie: str | None, now: float | None = None) -> Reviewer | None:
        if not cookie or cookie.count("|") != 4:
            return None
        payload, signature = cookie.rsplit("|", 1)
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        name, role, nonce, issued = payload.split("|")
        if not issued.isdigit() or (now or time.time()) - int(issued) > SESSION_SECONDS or role not in ROLES:
            return None
        try:
            return Reviewer(base64.urlsafe_b64decode(name.encode("ascii")).decode("utf-8"), role, nonce)
        except (ValueError, UnicodeDecodeError):
            return None

    def csrf_token(self, reviewer: Reviewer) -> str:
        return self._sign("csrf" + reviewer.nonce)

    def check_csrf(self, reviewer: Reviewer, token: str | None) -> None:
        if not token or not hmac.compare_digest(self.csrf_token(reviewer), token):
            raise AuthError("This form has expired or did not come from this site. Reload the page and try again.")

    def _sign(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()
