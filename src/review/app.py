"""The review web app: reviewers audit a queue item by item, by keyboard, in a browser.

`create_app(store, auth)` builds a FastAPI app; `reportguard review serve` runs it under uvicorn
on 127.0.0.1 by default. Pages:

    /                                   the queues, with your progress in each
    /q/{queue}                          jump to your next unreviewed item
    /q/{queue}/{position}       GET     one listing: text with evidence highlighted, scores,
                                        decision, your verdict form      POST  save the verdict
    /q/{queue}/agreement                Cohen's kappa per label, the disagreements
    /q/{queue}/{position}/adjudicate    all reviewers' verdicts and the final word (adjudicators)

Listing text is untrusted (sellers write it). It reaches HTML only through Jinja2 with
autoescaping on, or through highlight.highlight, which escapes before it marks; the pages carry
no inline script, and a Content-Security-Policy forbids any, so even a missed escape would not
run. Errors show a generic page with a request id; the traceback goes to the server log only.
Reviewers never see each other's verdicts on the review page (independent double review);
adjudicators see them all.

Hostile requests: under --local-only only the exact loopback Host names on the served port get an
answer, and a foreign Origin is refused on every method (auth.py says why); logins are throttled,
sessions are revoked on logout; positions in paths and queries are checked before they reach the
database (MAX_POSITION); cookies are Secure over HTTPS and with `behind_tls`.
"""
from __future__ import annotations

import logging
import math
import re
import secrets
import uuid
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from reportguard.core.labels import ALL_LABEL_NAMES, BY_NAME, MODEL_LABELS

from .agreement import agreement, disagreements, final_labels
from .auth import (LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Auth, AuthError, LoginThrottled, Reviewer,
                   local_host_allowed, same_origin)
from .highlight import highlight
from .runs import row_field, shop_of
from .store import Item, Store

HERE = Path(__file__).resolve().parent
log = logging.getLogger("reportguard.review")
QUEUE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
#: Largest item position (and `after`) a URL may name: the items table's INTEGER column is 32-bit on
#: PostgreSQL, and SQLite raises OverflowError past 2**63, so a bigger number never reaches a query.
MAX_POSITION = 2**31 - 1
CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
#: Keys for the label toggles, in ALL_LABEL_NAMES (severity) order.
LABEL_KEYS = dict(zip(ALL_LABEL_NAMES, "1234"))


def current_reviewer(request: Request) -> Reviewer:
    """The logged-in reviewer, or a redirect to the login page."""
    who = request.app.state.auth.reviewer_from(request.cookies.get(SESSION_COOKIE))
    if who is None:
        raise HTTPException(303, headers={"Location": "/login"})
    request.state.reviewer = who
    return who


# Module level, not inside create_app: with postponed annotations FastAPI resolves these names
# in the module's globals.
Who = Annotated[Reviewer, Depends(current_reviewer)]


def make_templates() -> Environment:
    # autoescape=True for every template, whatever its file name: no page may opt out.
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(LABELS=ALL_LABEL_NAMES, LABEL_KEYS=LABEL_KEYS, BY_NAME=BY_NAME, MODEL_LABELS=MODEL_LABELS)
    return env


def create_app(store: Store, auth: Auth, behind_tls: bool = False) -> FastAPI:
    """The app. `behind_tls`: a TLS-terminating proxy is in front, so cookies are Secure even though
    the proxy may reach us over plain HTTP (over HTTPS they are Secure anyway)."""
    app = FastAPI(title="reportguard review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = make_templates()
    app.state.store, app.state.auth = store, auth
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("reviewer", getattr(request.state, "reviewer", None))
        context.setdefault("csrf", "")
        return HTMLResponse(templates.get_template(name).render(request=request, **context), status_code=status)

    def cookie_options(request: Request) -> dict:
        return {"httponly": True, "samesite": "strict", "secure": behind_tls or request.url.scheme == "https"}

    # -- middleware: host check, security headers, no tracebacks --------------------------------

    @app.middleware("http")
    async def guard(request: Request, call_next):
        request_id = uuid.uuid4().hex[:12]
        if auth.local_only and not _local_host(request):
            response = PlainTextResponse("local-only mode: use http://127.0.0.1:PORT, http://localhost:PORT or "
                                         "http://[::1]:PORT, with the port the server runs on", status_code=421)
        elif not _same_origin(request, strict=auth.local_only):
            response = render(request, "error.html", 403, title="Forbidden",
                              message="This form was sent from another site.", request_id=request_id)
        else:
            try:
                response = await call_next(request)
            except Exception:
                # The reviewer gets a request id to quote; the traceback stays in the server log.
                log.exception("request %s %s %s failed", request_id, request.method, request.url.path)
                response = render(request, "error.html", 500, title="Something went wrong",
                                  message="The server could not finish this request. Your earlier verdicts are saved.",
                                  request_id=request_id)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        # same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with our own
        # form POSTs, which _same_origin must refuse (the browser test caught this).
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code in (302, 303) and exc.headers and "Location" in exc.headers:
            return RedirectResponse(exc.headers["Location"], status_code=exc.status_code)
        # Only messages written here reach the page (exc.detail is ours, never exception text).
        messages = {404: "There is nothing here.", 403: "You may not do that.", 400: "The request was not understood."}
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code in (400, 403) else messages.get(exc.status_code, "Error.")
        return render(request, "error.html", exc.status_code, title=f"Error {exc.status_code}", message=message, request_id="")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        log.info("invalid request to %s: %s", request.url.path, exc.errors())
        return render(request, "error.html", 400, title="Error 400", message="The request was not understood.", request_id="")

    # -- who is asking ---------------------------------------------------------------------------

    def csrf_checked(request: Request, who: Reviewer, token: str) -> None:
        try:
            auth.check_csrf(who, token)
        except AuthError as exc:
            raise HTTPException(403, detail=str(exc)) from None

    def queue_or_404(queue_id: str) -> dict:
        header = store.queue_header(queue_id) if QUEUE_ID.match(queue_id) else None
        if header is None:
            raise HTTPException(404)
        return header

    def item_or_404(queue_id: str, position: str) -> Item:
        item = store.item(queue_id, _position(position))
        if item is None:
            raise HTTPException(404)
        return item

    # -- login -----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = ""):
        nonce = secrets.token_urlsafe(16)
        response = render(request, "login.html", local_only=auth.local_only, login_csrf=nonce,
                          error="Login failed." if error else "", reviewer=None)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=600, **cookie_options(request))
        return response

    @app.post("/login")
    def login(request: Request, csrf: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
              token: Annotated[str, Form()] = ""):
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not secrets.compare_digest(cookie, csrf):
            raise HTTPException(403, detail="The login form expired. Reload the page and try again.")
        try:
            who = auth.login(name=name, token=token, client=request.client.host if request.client else "unknown")
        except LoginThrottled as exc:
            response = render(request, "login.html", 429, local_only=auth.local_only, login_csrf=cookie,
                              error=str(exc), reviewer=None)
            response.headers["Retry-After"] = str(math.ceil(exc.seconds))
            return response
        except AuthError as exc:
            return render(request, "login.html", 401, local_only=auth.local_only, login_csrf=cookie,
                          error=str(exc), reviewer=None)
        log.info("login: %s (%s)", who.name, who.role)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, auth.start_session(who), max_age=SESSION_SECONDS,
                            **cookie_options(request))
        response.delete_cookie(LOGIN_COOKIE, **cookie_options(request))
        return response

    @app.post("/logout")
    def logout(request: Request, who: Who, csrf: Annotated[str, Form()] = ""):
        csrf_checked(request, who, csrf)
        auth.end_session(request.cookies.get(SESSION_COOKIE))  # a copy of the cookie is dead from now on
        log.info("logout: %s", who.name)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, **cookie_options(request))
        return response

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz():
        return "ok"

    # -- queues and items ------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, who: Who):
        queues = store.queues()
        for q in queues:
            q["mine"] = len(store.reviewed_positions(q["queue_id"], who.name))
        return render(request, "queues.html", queues=queues, csrf=auth.csrf_token(who))

    @app.get("/q/{queue_id}")
    def next_item(request: Request, who: Who, queue_id: str, after: str = "-1"):
        queue_or_404(queue_id)
        position = store.next_unreviewed(queue_id, who.name, _position(after, low=-1))
        if position is None:
            return RedirectResponse(f"/q/{queue_id}/done", status_code=303)
        return RedirectResponse(f"/q/{queue_id}/{position}", status_code=303)

    @app.get("/q/{queue_id}/done", response_class=HTMLResponse)
    def done(request: Request, who: Who, queue_id: str):
        header = queue_or_404(queue_id)
        return render(request, "done.html", header=header, total=len(store.positions(queue_id)),
                      mine=len(store.reviewed_positions(queue_id, who.name)), csrf=auth.csrf_token(who))

    @app.get("/q/{queue_id}/agreement", response_class=HTMLResponse)
    def agreement_page(request: Request, who: Who, queue_id: str):
        header = queue_or_404(queue_id)
        by_item = store.verdicts_by_item(queue_id)
        return render(request, "agreement.html", header=header, stats=agreement(by_item),
                      disagreements=disagreements(by_item), csrf=auth.csrf_token(who))

    @app.get("/q/{queue_id}/{position}", response_class=HTMLResponse)
    def item_page(request: Request, who: Who, queue_id: str, position: str):
        header = queue_or_404(queue_id)
        item = item_or_404(queue_id, position)
        mine = store.verdict(queue_id, item.position, who.name)
        checked = mine["labels"] if mine else item.predicted
        return render(request, "item.html", **_item_context(store, header, item, who), verdict=mine,
                      checked=checked, csrf=auth.csrf_token(who), mode="review")

    @app.post("/q/{queue_id}/{position}")
    def save(request: Request, who: Who, queue_id: str, position: str, csrf: Annotated[str, Form()] = "",
             label: Annotated[list[str], Form()] = [], comment: Annotated[str, Form()] = "",
             action: Annotated[str, Form()] = "save"):
        csrf_checked(request, who, csrf)
        queue_or_404(queue_id)
        item = item_or_404(queue_id, position)
        labels = _labels_for(action, label, item)
        try:
            store.save_verdict(queue_id, item.position, who.name, labels, comment, role="review", source="web")
        except ValueError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        return RedirectResponse(f"/q/{queue_id}?after={item.position}", status_code=303)

    @app.get("/q/{queue_id}/{position}/adjudicate", response_class=HTMLResponse)
    def adjudicate_page(request: Request, who: Who, queue_id: str, position: str):
        if not who.can_adjudicate:
            raise HTTPException(403, detail="Adjudication needs the adjudicator role (third column of the tokens file).")
        header = queue_or_404(queue_id)
        item = item_or_404(queue_id, position)
        roles = store.verdicts_by_item(queue_id).get(item.position, {"review": [], "adjudication": []})
        reviews = roles["review"]
        mine = next((v for v in roles["adjudication"] if v["reviewer"] == who.name), None)
        agreed = [x for x in ALL_LABEL_NAMES if reviews and all(x in v["labels"] for v in reviews)]
        return render(request, "item.html", **_item_context(store, header, item, who), verdict=mine,
                      checked=mine["labels"] if mine else agreed, reviews=reviews,
                      adjudications=roles["adjudication"], final=final_labels(reviews, roles["adjudication"]),
                      csrf=auth.csrf_token(who), mode="adjudicate")

    @app.post("/q/{queue_id}/{position}/adjudicate")
    def adjudicate(request: Request, who: Who, queue_id: str, position: str, csrf: Annotated[str, Form()] = "",
                   label: Annotated[list[str], Form()] = [], comment: Annotated[str, Form()] = "",
                   action: Annotated[str, Form()] = "save"):
        csrf_checked(request, who, csrf)
        if not who.can_adjudicate:
            raise HTTPException(403, detail="Adjudication needs the adjudicator role.")
        queue_or_404(queue_id)
        item = item_or_404(queue_id, position)
        try:
            store.save_verdict(queue_id, item.position, who.name, _labels_for(action, label, item), comment,
                               role="adjudication", source="web")
        except ValueError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        return RedirectResponse(f"/q/{queue_id}/agreement", status_code=303)

    return app


def _labels_for(action: str, checked: list[str], item: Item) -> list[str]:
    """The labels a form submission asserts: the boxes ticked, the model's labels, or none."""
    if action == "accept":
        return item.predicted
    if action == "clean":
        return []
    if action != "save":
        raise HTTPException(400, detail="Unknown action.")
    return checked


def _item_context(store: Store, header: dict, item: Item, who: Reviewer) -> dict:
    record = item.record
    positions = store.positions(item.queue_id)
    index = positions.index(item.position)
    mine = store.reviewed_positions(item.queue_id, who.name)
    evidence = record.get("evidence") or []
    # Only the three fields the page shows, as strings: a malformed span must not break the page.
    shown = [{"label": str(ev.get("label", "")), "text": str(ev.get("text", "")), "field": str(ev.get("field", ""))}
             for ev in evidence if isinstance(ev, dict)]
    thresholds = header.get("thresholds") or {}
    return {
        "header": header, "item": item, "record": record,
        "title_html": highlight(row_field(record, "title"), evidence, "title"),
        "description_html": highlight(row_field(record, "description"), evidence, "description"),
        "platform": row_field(record, "platform"), "shop": shop_of(record),
        "qualification": row_field(record, "qualification"),
        "scores": [{"label": x, "p": float(record[f"p_{x}"]), "threshold": thresholds.get(x),
                    "predicted": x in item.predicted} for x in MODEL_LABELS],
        "evidence": shown,
        "prev": positions[index - 1] if index > 0 else None,
        "next": positions[index + 1] if index + 1 < len(positions) else None,
        "index": index + 1, "total": len(positions), "mine": len(mine), "reviewed_here": item.position in mine,
    }


def _position(text: str, low: int = 0) -> int:
    """A position (or `after`) from a URL: 400 when it is not a number, 404 when it cannot name an item.

    Out of range (negative, or past MAX_POSITION: "99999999999999999999999" used to reach SQLite and
    give a 500) and other spellings of a number ("+1", "06", "1_0", full-width digits) are 404: there
    is no page at that address.
    """
    if not text.strip().lstrip("+-").replace("_", "").isdecimal():
        raise HTTPException(400, detail="The request was not understood.")
    # The length test first: int() of a 5,000-digit string raises (Python's digit limit).
    if not CANONICAL_INT.fullmatch(text) or len(text) > len(str(MAX_POSITION)) or not low <= int(text) <= MAX_POSITION:
        raise HTTPException(404)
    return int(text)


def _local_host(request: Request) -> bool:
    """Under --local-only: the Host header names a loopback name on the port the server listens on."""
    server = request.scope.get("server")
    port = server[1] if server and len(server) > 1 else None
    return local_host_allowed(request.headers.get("host", ""), request.url.scheme, port)


def _same_origin(request: Request, strict: bool) -> bool:
    """False when the browser says the request came from another origin.

    Browsers send Origin with every POST and with scripted cross-origin reads. Without strict, only
    POSTs are checked and only host:port is compared (a TLS proxy may not tell us its scheme). Under
    --local-only (strict) every request is checked, scheme included: the Host was checked already,
    so this pins the Origin to the same loopback name and port.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by every client; the CSRF token still has to match
    if strict:
        return same_origin(origin, request.url.scheme, request.headers.get("host", ""))
    if request.method != "POST":
        return True
    if origin == "null":
        return False  # sandboxed frames, data: URLs: never our own page
    return urlsplit(origin).netloc == request.headers.get("host", "")
