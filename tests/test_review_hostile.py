"""The review app against a hostile user: a DNS-rebinding page, a replayed cookie after logout, a
token guesser, absurd positions in the address bar, and cookies that must not travel over plain
HTTP once the app sits behind TLS. Each test here failed before the fix it names."""
import logging
import re

import pytest
from fastapi.testclient import TestClient

from reportguard.review.app import create_app
from reportguard.review.auth import Auth, LoginThrottle, read_tokens, write_tokens
from reportguard.review.cli import main as review_main
from reportguard.review.queue import make_queue
from reportguard.review.samples import sample_rows, write_run
from reportguard.review.store import Store

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def setup(tmp_path):
    queue = make_queue(write_run(sample_rows(6), tmp_path / "run.jsonl"), 6, "top")
    store = Store(f"sqlite:///{tmp_path / 'verdicts.sqlite'}")
    store.load_queue(queue)
    return {"store": store, "q": queue.queue_id, "tmp": tmp_path}


@pytest.fixture
def tokens(setup):
    return write_tokens(setup["tmp"] / "tokens.txt", ["alice", "carol"], adjudicators=["carol"])


def token_auth(setup, **kwargs) -> Auth:
    return Auth(tokens=read_tokens(setup["tmp"] / "tokens.txt"), **kwargs)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', html).group(1)


def login(client: TestClient, name: str = "", token: str = "", **kwargs):
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "name": name, "token": token},
                       follow_redirects=False, **kwargs)


def local_client(setup, base_url: str = BASE, **app_kwargs) -> TestClient:
    return TestClient(create_app(setup["store"], Auth(local_only=True), **app_kwargs), base_url=base_url)


# -- hosts: exact names and the served port under --local-only ---------------------------------------


@pytest.mark.parametrize("host", [
    "127.evil.example:8765",        # the rebinding host from the issue: it starts with "127."
    "127.0.0.1.evil.example:8765",
    "localhost.evil.example:8765",
    "evil.example:8765",
    "127.0.0.1:9999",               # right name, another port
    "127.0.0.1",                    # no port means 80, and the app is served on 8765
    "127.0.0.2:8765",               # loopback, but not one of the three names
    "[::1]x:8765", "127.0.0.1:8765:1", "127.0.0.1:+8765", "",
])
def test_local_only_refuses_any_host_but_the_three_loopback_names_on_the_served_port(setup, host):
    client = local_client(setup)
    assert client.get("/login", headers={"Host": host}).status_code == 421


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"])
def test_local_only_accepts_the_loopback_names(setup, host):
    assert local_client(setup).get("/login", headers={"Host": host}).status_code == 200


def test_a_rebinding_page_cannot_post_verdicts(setup):
    client = local_client(setup)
    login(client, name="alice")
    q = setup["q"]
    token = csrf_of(client.get(f"/q/{q}/0").text)
    evil = {"Host": "127.evil.example:8765", "Origin": "http://127.evil.example:8765"}
    response = client.post(f"/q/{q}/0", data={"csrf": token, "label": ["report_sale"]}, headers=evil)
    assert response.status_code == 421
    assert setup["store"].verdicts() == []


@pytest.mark.parametrize("origin", ["http://127.evil.example:8765", "http://127.0.0.1:9999", "https://127.0.0.1:8765",
                                    "http://localhost:8765", "null", "http://127.0.0.1:8765.evil.example"])
def test_local_only_refuses_a_foreign_origin(setup, origin):
    client = local_client(setup)
    login(client, name="alice")
    q = setup["q"]
    token = csrf_of(client.get(f"/q/{q}/0").text)
    response = client.post(f"/q/{q}/0", data={"csrf": token, "label": ["report_sale"]}, headers={"Origin": origin})
    assert response.status_code == 403
    # A script on a foreign origin reading a page is refused as well, not only its POSTs.
    assert client.get(f"/q/{q}/0", headers={"Origin": origin}).status_code == 403
    assert setup["store"].verdicts() == []
    ok = client.post(f"/q/{q}/0", data={"csrf": token, "label": ["report_sale"]}, headers={"Origin": BASE})
    assert ok.status_code == 200 and len(setup["store"].verdicts()) == 1


def test_serve_binds_local_only_to_the_three_names_only(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'v.sqlite'}"
    for host in ("127.evil.example", "127.0.0.2"):
        assert review_main(["review", "serve", "--local-only", "--host", host, "--db", db]) == 2
        assert "127.0.0.1, localhost or ::1" in capsys.readouterr().err


# -- sessions: server-side, revoked on logout -------------------------------------------------------------


def test_a_replayed_cookie_after_logout_is_refused(setup):
    client = local_client(setup)
    login(client, name="alice")
    q = setup["q"]
    page = client.get(f"/q/{q}/0").text
    cookie, token = client.cookies["rg_session"], csrf_of(page)
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).headers["location"] == "/login"

    client.cookies.clear()
    client.cookies.set("rg_session", cookie)  # the attacker kept a copy
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get(f"/q/{q}/0", follow_redirects=False).status_code == 303
    response = client.post(f"/q/{q}/0", data={"csrf": token, "label": ["report_sale"]}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert setup["store"].verdicts() == []


def test_logout_ends_only_that_session(setup):
    app = create_app(setup["store"], Auth(local_only=True))
    laptop, phone = TestClient(app, base_url=BASE), TestClient(app, base_url=BASE)
    login(laptop, name="alice")
    login(phone, name="alice")
    laptop.post("/logout", data={"csrf": csrf_of(laptop.get("/").text)})
    assert laptop.get("/", follow_redirects=False).status_code == 303
    assert phone.get("/", follow_redirects=False).status_code == 200


def test_a_cookie_signed_with_the_server_key_but_never_issued_is_refused(setup):
    """Sessions live on the server: knowing the signing key (e.g. a leaked $REPORTGUARD_REVIEW_SECRET)
    is not enough to mint one, as it was when the cookie itself was the session."""
    import base64
    import hashlib
    import hmac
    import time

    secret = b"k" * 32
    client = TestClient(create_app(setup["store"], Auth(local_only=True, secret=secret)), base_url=BASE)
    name = base64.urlsafe_b64encode(b"mallory").decode()
    payload = f"{name}|adjudicator|{'0' * 32}|{int(time.time())}"
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    client.cookies.set("rg_session", f"{payload}|{signature}")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sessions_expire_and_are_bounded():
    from reportguard.review.auth import MAX_SESSIONS, SESSION_SECONDS, Reviewer

    auth = Auth(local_only=True)
    who = Reviewer("alice", "reviewer", "n")
    cookie = auth.start_session(who, now=1000.0)
    assert auth.reviewer_from(cookie, now=1000.0 + SESSION_SECONDS - 1) == who
    assert auth.reviewer_from(cookie, now=1000.0 + SESSION_SECONDS + 1) is None
    assert auth.reviewer_from(cookie, now=1000.0) is None  # an expired session is gone, not just hidden
    for i in range(MAX_SESSIONS + 10):
        auth.start_session(who, now=2000.0 + i)
    assert auth.session_count() <= MAX_SESSIONS


# -- logins: throttled per client and per token, and logged ---------------------------------------------


def test_failed_logins_are_throttled(setup, tokens, caplog):
    assert isinstance(token_auth(setup).throttle, LoginThrottle)  # on by default, with the policy below
    # The default policy, on a clock that stands still (the 200 tries in 0.8 s, and then some).
    client = TestClient(create_app(setup["store"], token_auth(setup, throttle=LoginThrottle(clock=lambda: 50.0))))
    caplog.set_level(logging.INFO, logger="reportguard.review")
    codes = [login(client, token=f"wrong-token-number-{i:04d}").status_code for i in range(30)]
    assert codes == [401] * 6 + [429] * 24, codes  # 5 free failures; the 6th locks for 1 s
    # While locked out, even the right token is refused (a guesser learns nothing), with a Retry-After.
    response = login(client, token=tokens["alice"])
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert "rg_session" not in client.cookies
    failures = [r for r in caplog.records if "failed login" in r.getMessage()]
    assert failures and "testclient" in failures[0].getMessage()
    assert not any("wrong-token-number" in r.getMessage() for r in caplog.records), "tokens must not be logged"


def test_backoff_doubles_and_then_lets_the_reviewer_in(setup, tokens):
    clock = [1000.0]
    throttle = LoginThrottle(free_failures=3, base_seconds=2, max_seconds=60, clock=lambda: clock[0])
    client = TestClient(create_app(setup["store"], token_auth(setup, throttle=throttle)))
    for _ in range(3):
        assert login(client, token="wrong-token-of-enough-length").status_code == 401
    assert login(client, token="wrong-token-of-enough-length").status_code == 401  # 4th: now locked for 2 s
    assert login(client, token=tokens["alice"]).status_code == 429
    clock[0] += 2.5
    assert login(client, token="wrong-token-of-enough-length").status_code == 401  # 5th: locked for 4 s
    clock[0] += 3
    assert login(client, token=tokens["alice"]).status_code == 429
    clock[0] += 1.5
    assert login(client, token=tokens["alice"]).status_code == 303
    assert client.get("/").status_code == 200


def test_throttle_counts_per_token_across_clients(setup, tokens):
    clock = [1000.0]
    throttle = LoginThrottle(free_failures=3, base_seconds=10, max_seconds=60, clock=lambda: clock[0])
    app = create_app(setup["store"], token_auth(setup, throttle=throttle))
    # One guessed token tried from many addresses: each address is fresh, the token is not.
    codes = [login(TestClient(app, client=(f"10.0.0.{i}", 5000)), token="same-guess-from-a-botnet").status_code
             for i in range(6)]
    assert codes[:4] == [401] * 4 and codes[4:] == [429, 429], codes
    # Another client with another credential is not affected.
    assert login(TestClient(app, client=("10.0.1.1", 5000)), token=tokens["alice"]).status_code == 303


def test_throttle_memory_is_bounded():
    clock = [0.0]
    throttle = LoginThrottle(max_keys=100, clock=lambda: clock[0])
    for i in range(1000):
        throttle.failed([("client", f"10.{i}")])
        clock[0] += 0.001
    assert len(throttle) <= 100
    # The most recent offender is still remembered.
    for _ in range(10):
        throttle.failed([("client", "10.999")])
    assert throttle.wait([("client", "10.999")]) > 0


# -- positions: validated, out of range is 404 ------------------------------------------------------------


@pytest.mark.parametrize("position", ["99999999999999999999999", "9" * 5000, str(2**31), str(2**63), "-1", "06", "+1",
                                      "1_0", "６"])
def test_out_of_range_positions_are_404(setup, position):
    client = local_client(setup)
    login(client, name="judge")
    q = setup["q"]
    token = csrf_of(client.get(f"/q/{q}/0").text)
    assert client.get(f"/q/{q}/{position}").status_code == 404
    assert client.post(f"/q/{q}/{position}", data={"csrf": token, "label": ["report_sale"]}).status_code == 404
    assert client.get(f"/q/{q}/{position}/adjudicate").status_code == 404
    assert client.post(f"/q/{q}/{position}/adjudicate", data={"csrf": token}).status_code == 404
    after = "-2" if position == "-1" else position  # -1 is `after`'s default: "from the start"
    assert client.get(f"/q/{q}?after={after}", follow_redirects=False).status_code == 404
    assert setup["store"].verdicts() == []


def test_positions_in_range_still_work(setup):
    client = local_client(setup)
    login(client, name="alice")
    q = setup["q"]
    assert client.get(f"/q/{q}/5").status_code == 200
    assert client.get(f"/q/{q}/6").status_code == 404  # in range, but the queue has 6 items
    assert client.get(f"/q/{q}?after=-1", follow_redirects=False).headers["location"] == f"/q/{q}/0"
    assert client.get(f"/q/{q}?after=2", follow_redirects=False).headers["location"] == f"/q/{q}/3"
    assert client.get(f"/q/{q}/abc").status_code == 400


# -- Secure cookies over HTTPS or behind a TLS proxy ----------------------------------------------------------


def set_cookies(response) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]


def is_secure(set_cookie: str) -> bool:
    return "; secure" in set_cookie.lower()


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


@pytest.mark.parametrize("base_url, behind_tls, secure", [
    ("http://127.0.0.1:8765", False, False),
    ("https://127.0.0.1:8765", False, True),
    ("http://127.0.0.1:8765", True, True),  # the proxy talks plain HTTP to us; the browser talks HTTPS to it
])
def test_cookies_are_secure_over_https_or_behind_tls(setup, base_url, behind_tls, secure):
    # Cookies travel by hand: a test client over http:// would (rightly) not send Secure cookies back.
    client = local_client(setup, base_url=base_url, behind_tls=behind_tls)
    page = client.get("/login")
    [login_cookie] = set_cookies(page)
    client.cookies.clear()
    response = client.post("/login", data={"csrf": csrf_of(page.text), "name": "alice"}, follow_redirects=False,
                           headers={"Cookie": cookie_value(login_cookie)})
    assert response.status_code == 303
    session = next(c for c in set_cookies(response) if c.startswith("rg_session="))
    for cookie in [login_cookie, session]:
        assert is_secure(cookie) is secure, cookie
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    client.cookies.clear()
    home = client.get("/", headers={"Cookie": cookie_value(session)})
    assert home.status_code == 200
    client.cookies.clear()
    logout = client.post("/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False,
                         headers={"Cookie": cookie_value(session)})
    assert logout.status_code == 303
    assert set_cookies(logout) and all(is_secure(c) is secure for c in set_cookies(logout))


def test_serve_behind_tls_trusts_the_proxy_and_marks_cookies_secure(setup, tokens, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    db = f"sqlite:///{setup['tmp'] / 'v2.sqlite'}"
    assert review_main(["review", "serve", "--tokens", str(setup["tmp"] / "tokens.txt"), "--behind-tls",
                        "--db", db]) == 0
    assert seen["proxy_headers"] is True and seen["host"] == "127.0.0.1"
    client = TestClient(seen["app"], base_url="http://review.example.org")
    page = client.get("/login")
    assert is_secure(set_cookies(page)[0])


def test_serve_refuses_local_only_behind_a_tls_proxy(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'v.sqlite'}"
    assert review_main(["review", "serve", "--local-only", "--behind-tls", "--db", db]) == 2
    assert "--tokens" in capsys.readouterr().err


def test_serve_over_https_directly(setup, tokens, monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    db = f"sqlite:///{setup['tmp'] / 'v3.sqlite'}"
    args = ["review", "serve", "--local-only", "--db", db, "--ssl-certfile", "cert.pem"]
    assert review_main(args) == 2 and "--ssl-keyfile" in capsys.readouterr().err
    assert review_main(args + ["--ssl-keyfile", "key.pem"]) == 0
    assert (seen["ssl_certfile"], seen["ssl_keyfile"], seen["proxy_headers"]) == ("cert.pem", "key.pem", False)
    assert "open https://127.0.0.1:8765/" in capsys.readouterr().err
    page = TestClient(seen["app"], base_url="https://127.0.0.1:8765").get("/login")
    assert page.status_code == 200 and is_secure(set_cookies(page)[0])


def test_a_burst_of_parallel_guesses_is_counted_one_by_one(setup, tokens):
    """Logins run in a thread pool: without serialising the check, a burst would all pass the
    throttle before its first failure was counted."""
    import threading
    import time

    from reportguard.review.auth import AuthError

    class SlowThrottle(LoginThrottle):
        def wait(self, keys):
            result = super().wait(keys)
            time.sleep(0.01)  # widen the window between "may I try" and "that failed"
            return result

    auth = token_auth(setup, throttle=SlowThrottle(clock=lambda: 50.0))
    outcomes = []

    def guess(i):
        try:
            auth.login(token=f"parallel-guess-number-{i:03d}", client="10.9.9.9")
        except AuthError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("AuthError") == 6 and outcomes.count("LoginThrottled") == 18, outcomes


def test_a_real_server_knows_its_port(setup):
    """Under uvicorn the served port comes from the listening socket (TestClient only pretends)."""
    import socket
    import threading
    import time
    import urllib.error
    import urllib.request

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(setup["store"], Auth(local_only=True)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)

        def status(host):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/login", headers={"Host": host})
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status(f"127.0.0.1:{port}") == 200 and status(f"localhost:{port}") == 200
        assert status(f"127.evil.example:{port}") == 421 and status(f"127.0.0.1:{port + 1}") == 421
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_auth_doctests():
    import doctest

    from reportguard.review import auth
    result = doctest.testmod(auth)
    assert result.attempted and not result.failed
