"""The review web app: untrusted listing text never becomes markup, POSTs need the session's CSRF
token, logins need a token (or explicit local-only mode), errors show no internals, verdicts
survive a restart and two reviewers at once keep their work."""
import json
import re
import threading
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from reportguard.review.app import create_app
from reportguard.review.auth import Auth, read_tokens, write_tokens
from reportguard.review.queue import make_queue
from reportguard.review.samples import sample_rows, write_run
from reportguard.review.store import Store

SCRIPT = "<script>alert('xss')</script>"
TITLE = f'{SCRIPT}代办检测报告" autofocus onfocus="alert(1)'
DESCRIPTION = "'><img src=x onerror=alert(2)>不用寄样 包过"
SHOP = '"><svg onload=alert(3)>'
PLATFORM = "</title><script>alert(4)</script>"
COMMENT = "</textarea><script>alert(5)</script>"
PAYLOADS = [SCRIPT, "<img src=x", "<svg onload", "</title><script>", "</textarea><script>", '" autofocus onfocus="']


def hostile_rows():
    rows = sample_rows(8)
    evil = rows[0]
    evil.update(title=TITLE, description=DESCRIPTION, shop_name=SHOP, platform=PLATFORM, listing_id='L"<b>0',
                qualification="<iframe src=//evil>")
    start = TITLE.index("代办检测报告")
    evil["evidence"] = json.dumps([
        {"label": "report_sale", "text": "代办检测报告", "field": "title", "start": start, "end": start + 6},
        # A span over the payload itself, and one whose label tries to break out of the class attribute.
        {"label": "false_ad", "text": SCRIPT, "field": "title", "start": 0, "end": len(SCRIPT)},
        {"label": '"><script>alert(6)</script>', "text": "包过", "field": "description",
         "start": DESCRIPTION.index("包过"), "end": DESCRIPTION.index("包过") + 2},
        {"label": "false_ad", "text": "nowhere", "field": "description", "start": 999, "end": 1005},
    ], ensure_ascii=False)
    return rows


@pytest.fixture
def setup(tmp_path):
    run = write_run(hostile_rows(), tmp_path / "run.jsonl")
    queue = make_queue(run, 8, "top")
    url = f"sqlite:///{tmp_path / 'verdicts.sqlite'}"
    store = Store(url)
    store.load_queue(queue)
    evil_position = next(i["position"] for i in queue.items if i["listing_id"] == 'L"<b>0')
    return {"store": store, "queue": queue, "url": url, "tmp": tmp_path, "evil": evil_position}


def client_for(app) -> TestClient:
    # Local-only mode accepts loopback Host headers only; TestClient's default is "testserver".
    return TestClient(app, base_url="http://127.0.0.1:8765")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', html).group(1)


def login(client: TestClient, name: str = "", token: str = ""):
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "name": name, "token": token})


def local_app(setup):
    return create_app(setup["store"], Auth(local_only=True))


class Elements(HTMLParser):
    """Every start tag with its attributes: the structure a browser would build."""

    def __init__(self, html):
        super().__init__()
        self.tags = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str):
    for payload in PAYLOADS:
        assert payload not in html, f"unescaped payload {payload!r}"
    tags = Elements(html).tags
    scripts = [attrs.get("src") for tag, attrs in tags if tag == "script"]
    assert scripts == ["/static/review.js"], scripts
    assert not [t for t in tags if t[0] in ("img", "svg", "iframe")]
    handlers = [(tag, name) for tag, attrs in tags for name in attrs if name.startswith("on") or name == "autofocus"
                and tag != "input"]
    assert handlers == []


def test_listing_text_is_escaped_everywhere(setup):
    client = client_for(local_app(setup))
    login(client, name="<script>alert(7)</script>reviewer")
    q, p = setup["queue"].queue_id, setup["evil"]
    page = client.get(f"/q/{q}/{p}")
    assert page.status_code == 200
    assert_inert(page.text)
    assert "&lt;script&gt;alert(7)&lt;/script&gt;reviewer" in page.text
    # The text is still there for the reviewer to read, escaped; the span over the payload is marked.
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in page.text
    assert '<mark class="ev ev-report_sale" data-labels="report_sale">代办检测报告</mark>' in page.text
    assert "&#34; autofocus onfocus=&#34;alert(1)" in page.text
    # A hostile evidence label becomes the neutral class, never markup.
    assert 'class="ev ev-other"' in page.text

    # A hostile comment, saved and shown again inside the textarea.
    client.post(f"/q/{q}/{p}", data={"csrf": csrf_of(page.text), "label": ["report_sale"], "comment": COMMENT})
    again = client.get(f"/q/{q}/{p}")
    assert_inert(again.text)
    assert "&lt;/textarea&gt;&lt;script&gt;" in again.text


def test_adjudication_and_agreement_pages_escape_too(setup):
    store, q, p = setup["store"], setup["queue"].queue_id, setup["evil"]
    store.save_verdict(q, p, '<script>alert(8)</script>', ["report_sale"], COMMENT)
    store.save_verdict(q, p, "bob", [], "clean")
    client = client_for(local_app(setup))
    login(client, name="judge")
    for url in (f"/q/{q}/agreement", f"/q/{q}/{p}/adjudicate", "/"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert_inert(page.text)


def test_pages_forbid_inline_scripts_by_policy(setup):
    client = client_for(local_app(setup))
    login(client, name="alice")
    response = client.get(f"/q/{setup['queue'].queue_id}/0")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_every_action_on_the_item_page_has_a_shortcut(setup):
    client = client_for(local_app(setup))
    login(client, name="alice")
    page = client.get(f"/q/{setup['queue'].queue_id}/1").text
    tags = Elements(page).tags
    actionable = [(tag, attrs) for tag, attrs in tags
                  if tag in ("a", "button", "textarea") or (tag == "input" and attrs.get("type") == "checkbox")]
    assert actionable and all("data-key" in attrs for _, attrs in actionable), \
        [a for a in actionable if "data-key" not in a[1]]
    keys = [attrs["data-key"] for _, attrs in actionable]
    assert len(keys) == len(set(keys)), "a key must do one thing"
    assert {"1", "2", "3", "4", "s", "a", "x", "c", "j", "k", "u"} <= set(keys)
    assert "data-key" in client.get("/static/review.js").text


def test_post_without_or_with_a_foreign_csrf_token_is_refused(setup):
    app = local_app(setup)
    alice, bob = client_for(app), client_for(app)
    login(alice, name="alice")
    login(bob, name="bob")
    q = setup["queue"].queue_id
    bobs_token = csrf_of(bob.get(f"/q/{q}/0").text)
    for data in ({"label": ["report_sale"]}, {"label": ["report_sale"], "csrf": "forged"},
                 {"label": ["report_sale"], "csrf": bobs_token}):
        response = alice.post(f"/q/{q}/0", data=data)
        assert response.status_code == 403
    assert setup["store"].verdicts() == []
    # Right token, but the browser says the form came from another site.
    token = csrf_of(alice.get(f"/q/{q}/0").text)
    response = alice.post(f"/q/{q}/0", data={"csrf": token}, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and setup["store"].verdicts() == []
    # And with everything right, it is stored.
    response = alice.post(f"/q/{q}/0", data={"csrf": token, "label": ["report_sale"]},
                          headers={"Origin": "http://127.0.0.1:8765"})
    assert response.status_code == 200
    assert [v["reviewer"] for v in setup["store"].verdicts()] == ["alice"]


def test_login_form_needs_its_double_submit_cookie(setup):
    client = client_for(local_app(setup))
    response = client.post("/login", data={"csrf": "x", "name": "mallory"})
    assert response.status_code == 403
    assert "rg_session" not in client.cookies


def test_session_cookie_is_httponly_and_samesite_strict(setup):
    client = client_for(local_app(setup))
    page = client.get("/login")
    response = client.post("/login", data={"csrf": csrf_of(page.text), "name": "alice"}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_token_login(setup):
    tokens_file = setup["tmp"] / "tokens.txt"
    made = write_tokens(tokens_file, ["alice", "carol"], adjudicators=["carol"])
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    app = create_app(setup["store"], Auth(tokens=read_tokens(tokens_file)))
    client = TestClient(app)
    q = setup["queue"].queue_id

    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert login(client, token="wrong-token-of-enough-length").status_code == 401
    assert login(client, name="alice").status_code == 401  # a name alone is not enough here
    assert login(client, token=made["alice"]).status_code == 200
    page = client.get(f"/q/{q}/0")
    assert "alice · reviewer" in page.text
    client.post(f"/q/{q}/0", data={"csrf": csrf_of(page.text), "label": ["false_ad"]})
    assert setup["store"].verdicts()[0]["reviewer"] == "alice"
    # A reviewer may not adjudicate; an adjudicator may.
    assert client.get(f"/q/{q}/0/adjudicate").status_code == 403
    carol = TestClient(app)
    login(carol, token=made["carol"])
    assert carol.get(f"/q/{q}/0/adjudicate").status_code == 200


def test_a_tampered_session_cookie_is_a_logged_out_one(setup):
    auth = Auth(local_only=True)
    client = client_for(create_app(setup["store"], auth))
    login(client, name="alice")
    cookie = client.cookies["rg_session"]
    forged = cookie.replace(cookie.split("|")[0], "Ym9i")  # "bob"
    client.cookies.clear()
    client.cookies.set("rg_session", forged)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_tokens_file_rules(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("alice short\n")
    with pytest.raises(ValueError, match="shorter"):
        read_tokens(bad)
    bad.write_text("alice 0123456789abcdef0123 boss\n")
    with pytest.raises(ValueError, match="role"):
        read_tokens(bad)
    with pytest.raises(ValueError):
        Auth()  # neither tokens nor local-only: refused, no silent open mode


def test_local_only_refuses_foreign_host_headers(setup):
    client = TestClient(local_app(setup), base_url="http://evil.example")
    assert client.get("/login").status_code == 421


def test_errors_show_no_internals(setup, monkeypatch):
    client = client_for(local_app(setup))
    login(client, name="alice")

    def explode():
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(setup["store"], "queues", explode)
    response = client.get("/")
    assert response.status_code == 500
    assert "secret detail" not in response.text and "Traceback" not in response.text
    assert "Request id" in response.text
    assert client.get("/q/no-such-queue/0").status_code == 404
    bad = client.get(f"/q/{setup['queue'].queue_id}/not-a-number")
    assert bad.status_code == 400 and "int_parsing" not in bad.text and "not-a-number" not in bad.text


def test_verdicts_survive_a_server_restart(setup):
    q = setup["queue"].queue_id
    first = client_for(local_app(setup))
    login(first, name="alice")
    first.post(f"/q/{q}/2", data={"csrf": csrf_of(first.get(f"/q/{q}/2").text), "label": ["testing_service"],
                                  "comment": "lab looks real"})
    setup["store"].close()

    restarted = Store(setup["url"])  # a new process would do exactly this
    second = client_for(create_app(restarted, Auth(local_only=True)))
    login(second, name="alice")
    page = second.get(f"/q/{q}/2").text
    assert "lab looks real" in page and "saved" in page
    assert re.search(r'value="testing_service" id="label-testing_service" data-key="4"\s+checked', page)
    assert second.get(f"/q/{q}", follow_redirects=False).headers["location"] == f"/q/{q}/0"


def test_two_reviewers_at_once_keep_each_others_work(setup):
    app = local_app(setup)
    q = setup["queue"].queue_id
    errors = []

    def review(name, label):
        try:
            client = client_for(app)
            login(client, name=name)
            for position in range(8):
                token = csrf_of(client.get(f"/q/{q}/{position}").text)
                response = client.post(f"/q/{q}/{position}", data={"csrf": token, "label": [label], "comment": name})
                assert response.status_code == 200
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=review, args=("alice", "report_sale")),
               threading.Thread(target=review, args=("bob", "false_ad"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    verdicts = setup["store"].verdicts()
    assert len(verdicts) == 16
    assert {v["reviewer"]: v["labels"] for v in verdicts} == {"alice": ["report_sale"], "bob": ["false_ad"]}


def test_accept_and_clean_shortcuts_save_the_model_labels_or_none(setup):
    client = client_for(local_app(setup))
    login(client, name="alice")
    q, store = setup["queue"].queue_id, setup["store"]
    token = csrf_of(client.get(f"/q/{q}/0").text)
    client.post(f"/q/{q}/0", data={"csrf": token, "action": "accept"})
    client.post(f"/q/{q}/1", data={"csrf": token, "action": "clean", "label": ["report_sale"]})
    assert store.verdict(q, 0, "alice")["labels"] == store.item(q, 0).predicted
    assert store.verdict(q, 1, "alice")["labels"] == []
    assert client.post(f"/q/{q}/2", data={"csrf": token, "action": "drop table"}).status_code == 400


def test_adjudication_through_the_ui(setup):
    q, store = setup["queue"].queue_id, setup["store"]
    store.save_verdict(q, 0, "alice", ["report_sale"])
    store.save_verdict(q, 0, "bob", ["report_sale", "false_ad"])
    client = client_for(local_app(setup))
    login(client, name="judge")
    agreement_page = client.get(f"/q/{q}/agreement").text
    assert f'href="/q/{q}/0/adjudicate"' in agreement_page and "open" in agreement_page
    page = client.get(f"/q/{q}/0/adjudicate").text
    assert "alice" in page and "bob" in page
    client.post(f"/q/{q}/0/adjudicate", data={"csrf": csrf_of(page), "label": ["report_sale", "false_ad"]})
    [v] = [v for v in store.verdicts() if v["role"] == "adjudication"]
    assert v["reviewer"] == "judge" and v["labels"] == ["report_sale", "false_ad"]
    assert "adjudicated: report_sale, false_ad" in client.get(f"/q/{q}/agreement").text
