"""Who is reviewing, and proof that a request came from our own page.

Two modes, chosen explicitly when the server starts:

- tokens (`--tokens FILE`): each reviewer has a secret token, given once on the login page. The
  file holds one reviewer per line, `NAME TOKEN [ROLE]` (ROLE `reviewer`, the default, or
  `adjudicator`, who may settle disagreements); `#` starts a comment. `reportguard review tokens
  NAME...` writes one with fresh random tokens. Tokens are compared as SHA-256 digests in
  constant time.
- local-only (`--local-only`): anyone who can reach the server types a name. That is only safe
  when nobody else can reach it, so the server binds only 127.0.0.1, localhost or ::1 in this
  mode, and answers only requests whose Host is exactly `127.0.0.1`, `localhost` or `[::1]` with
  the port it is served on (421 otherwise), and whose Origin, when the browser sends one, is that
  same origin (403 otherwise). A DNS-rebinding page on another site reaches the server through the
  reviewer's browser under its own name (`127.attacker.example`), so a prefix test is not enough.

Sessions live on the server: the cookie holds a random session id (256 bits), the server keeps
SHA-256(id) -> reviewer, and logout deletes the entry, so a copied cookie is dead after logout or
after SESSION_SECONDS. The cookie is HttpOnly, SameSite=Strict, and Secure when the app is served
over HTTPS or behind a TLS proxy. Sessions are per server process: after a restart reviewers log
in again (their verdicts are kept). CSRF: every form carries HMAC(key, "csrf" + session nonce),
which a page on another origin cannot read or compute; the login form, before any session
exists, uses a double-submit cookie instead. POSTs whose Origin names another host are refused.

Failed logins are throttled per client address and per submitted credential (LoginThrottle:
a few free tries, then exponential backoff), and logged with the address and a short digest of
the credential, never the credential itself.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from reportguard.core.errors import InputError, UsageError

log = logging.getLogger("reportguard.review.auth")

ROLES = ("reviewer", "adjudicator")
SESSION_COOKIE = "rg_session"
LOGIN_COOKIE = "rg_login"
SESSION_SECONDS = 12 * 3600
#: Live sessions kept at most; past it the oldest is dropped (each login adds one).
MAX_SESSIONS = 10_000
MIN_TOKEN_CHARS = 16
#: The names a browser may use for a --local-only server (the Host header, IPv6 bracketed) ...
LOCAL_HOST_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: ... and the addresses such a server may bind.
LOCAL_BIND_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
# host[:port] of a Host header or an origin: a bracketed IPv6 literal or a plain name, and a port
# without sign or leading zero. Anything else (userinfo, paths, a second colon) is malformed.
_AUTHORITY = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([1-9][0-9]{0,4}))?")


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
            raise InputError(f"{path}:{number}: expected `NAME TOKEN [ROLE]`")
        name, token, role = parts[0], parts[1], parts[2] if len(parts) == 3 else "reviewer"
        if role not in ROLES:
            raise InputError(f"{path}:{number}: role must be one of {ROLES}, not {role!r}")
        if len(token) < MIN_TOKEN_CHARS:
            raise InputError(f"{path}:{number}: token for {name} is shorter than {MIN_TOKEN_CHARS} characters")
        if name in names:
            raise InputError(f"{path}:{number}: reviewer {name} listed twice")
        names.add(name)
        table[_digest(token)] = (name, role)
    if not table:
        raise InputError(f"{path}: no reviewers")
    return table


def write_tokens(path: str | Path, names: list[str], adjudicators: list[str] = ()) -> dict[str, str]:
    """Append fresh tokens for `names` to a tokens file (mode 0600); returns name -> token."""
    path = Path(path)
    made = {}
    lines = []
    for name in names:
        if not name or any(c.isspace() for c in name) or "#" in name:
            raise InputError(f"reviewer name {name!r} must be one word without '#'")
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
    """Whether a bind address is this machine only: `localhost` or a loopback IP literal.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.evil.example", "0.0.0.0")]
    [True, True, True, False, False]
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_authority(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """'127.0.0.1:8765' -> ('127.0.0.1', 8765); '[::1]' -> ('[::1]', default_port); None if malformed.

    >>> split_authority("LocalHost:8765", 80), split_authority("[::1]", 443), split_authority("a:b:c", 80)
    (('localhost', 8765), ('[::1]', 443), None)
    """
    if not value.isascii():
        return None
    match = _AUTHORITY.fullmatch(value.lower())
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else default_port


def local_host_allowed(host_header: str, scheme: str, served_port: int | None) -> bool:
    """A --local-only request's Host: exactly one of LOCAL_HOST_NAMES, on the port we serve.

    >>> local_host_allowed("127.0.0.1:8765", "http", 8765), local_host_allowed("127.evil.example:8765", "http", 8765)
    (True, False)
    """
    parsed = split_authority(host_header, DEFAULT_PORTS.get(scheme))
    return served_port is not None and parsed is not None and parsed[0] in LOCAL_HOST_NAMES and parsed[1] == served_port


def same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Whether an Origin header names this very scheme, host and port (default ports filled in)."""
    oscheme, sep, authority = origin.partition("://")
    if not sep or oscheme.lower() != scheme or oscheme.lower() not in DEFAULT_PORTS:
        return False
    ours = split_authority(host_header, DEFAULT_PORTS[scheme])
    return ours is not None and split_authority(authority, DEFAULT_PORTS[scheme]) == ours


class LoginThrottled(AuthError):
    """Too many failed logins from this client or with this credential; retry after `seconds`."""

    def __init__(self, seconds: float):
        super().__init__(f"Too many failed logins. Try again in {math.ceil(seconds)} seconds.")
        self.seconds = seconds


class LoginThrottle:
    """Exponential backoff on failed logins, one counter per key (a client address, a credential).

    The first `free_failures` failures of a key cost nothing; each further one locks the key for
    base_seconds * 2**k (k = 0, 1, ...), at most max_seconds. While any of a login's keys is locked,
    the login is refused without looking at the credential, so a guesser learns nothing from it,
    and the refused try does not extend the lock. A key is forgotten max_seconds after its last
    failure. Success resets nothing: a reviewer with one valid token cannot use it to clear the
    counter of their address between guesses. At most `max_keys` keys are kept, the least
    recently failed dropped first (an active guesser's own key is always the most recent).
    """

    def __init__(self, free_failures: int = 5, base_seconds: float = 1.0, max_seconds: float = 900.0,
                 max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.free_failures, self.base_seconds, self.max_seconds = free_failures, base_seconds, max_seconds
        self.max_keys, self.clock = max_keys, clock
        self._failures: OrderedDict[tuple, tuple[int, float]] = OrderedDict()  # key -> (count, last failure)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def lock_seconds(self, failures: int) -> float:
        if failures <= self.free_failures:
            return 0.0
        return min(self.base_seconds * 2.0 ** min(failures - self.free_failures - 1, 40), self.max_seconds)

    def wait(self, keys: Iterable[tuple]) -> float:
        """Seconds until a login with these keys may be tried; 0 when it may be tried now."""
        now = self.clock()
        with self._lock:
            records = [self._failures[k] for k in keys if k in self._failures]
        return max([last + self.lock_seconds(count) - now for count, last in records] + [0.0])

    def failed(self, keys: Iterable[tuple]) -> int:
        """Count a failure against every key; returns the highest count among them."""
        now = self.clock()
        worst = 0
        with self._lock:
            for key in dict.fromkeys(keys):
                count, last = self._failures.pop(key, (0, now))
                count = 1 if now - last > self.max_seconds else count + 1
                self._failures[key] = (count, now)
                worst = max(worst, count)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        return worst


class Auth:
    def __init__(self, tokens: dict[str, tuple[str, str]] | None = None, local_only: bool = False,
                 secret: bytes | None = None, throttle: LoginThrottle | None = None):
        if bool(tokens) == bool(local_only):
            raise UsageError("choose exactly one of: reviewer tokens (--tokens FILE) or --local-only")
        self.tokens = tokens or {}
        self.local_only = local_only
        env_secret = os.environ.get("REPORTGUARD_REVIEW_SECRET", "")
        self.secret = secret or (env_secret.encode() if env_secret else secrets.token_bytes(32))
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._sessions: dict[str, tuple[Reviewer, float]] = {}  # sha256(session id) -> (who, issued); issue order
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()

    # -- login ------------------------------------------------------------------------------

    def login(self, name: str = "", token: str = "", client: str = "unknown") -> Reviewer:
        """A reviewer for these credentials, or AuthError (LoginThrottled while `client` or the
        credential is locked out by earlier failures)."""
        credential = token if not self.local_only else name
        fingerprint = _digest(credential or "")
        keys = [("client", client), ("credential", fingerprint)]
        # One login at a time (checking a token takes microseconds): otherwise a burst of parallel
        # guesses would all pass the throttle before the first failure is counted.
        with self._login_lock:
            wait = self.throttle.wait(keys)
            if wait > 0:
                log.info("login refused: client %s, credential %s locked for %.0f more s",
                         client, fingerprint[:8], wait)
                raise LoginThrottled(wait)
            try:
                return self._check(name, token)
            except AuthError:
                failures = self.throttle.failed(keys)
                lock = self.throttle.lock_seconds(failures)
                log.warning("failed login from client %s (credential %s): %d recent failure(s)%s", client,
                            fingerprint[:8], failures, f", locked for {lock:.0f} s" if lock else "")
                raise

    def _check(self, name: str, token: str) -> Reviewer:
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

    def start_session(self, reviewer: Reviewer, now: float | None = None) -> str:
        """A new session for `reviewer`; returns the cookie value (a random id, nothing else)."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            # Dicts keep insertion (= issue) order: expired sessions, then the oldest, sit in front.
            while self._sessions:
                oldest = next(iter(self._sessions))
                if now - self._sessions[oldest][1] <= SESSION_SECONDS and len(self._sessions) < MAX_SESSIONS:
                    break
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = (reviewer, now)
        return session_id

    def reviewer_from(self, cookie: str | None, now: float | None = None) -> Reviewer | None:
        """The reviewer of a live session, or None (unknown, logged out or expired)."""
        if not cookie or len(cookie) > 128:
            return None
        now = time.time() if now is None else now
        key = _digest(cookie)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                return None
            if now - entry[1] > SESSION_SECONDS:
                del self._sessions[key]
                return None
        return entry[0]

    def end_session(self, cookie: str | None) -> bool:
        """Revoke a session (logout); True if it was live."""
        with self._lock:
            return self._sessions.pop(_digest(cookie), None) is not None if cookie else False

    def session_count(self) -> int:
        return len(self._sessions)

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, reviewer: Reviewer) -> str:
        return self._sign("csrf" + reviewer.nonce)

    def check_csrf(self, reviewer: Reviewer, token: str | None) -> None:
        if not token or not hmac.compare_digest(self.csrf_token(reviewer), token):
            raise AuthError("This form has expired or did not come from this site. Reload the page and try again.")

    def _sign(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()
