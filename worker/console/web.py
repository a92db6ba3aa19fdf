"""The console's pages and actions: an aiohttp sub-application mounted at ``/console`` on the
api role's server (same process, same port).

Server-rendered (Jinja2, autoescaped) so every page works without JavaScript and nothing
secret reaches a browser-side store; htmx (vendored in ``static/``) only polls for the parts
that change: counts and the progress of a running operation. Every action is a plain form POST
with a CSRF token, answered with a redirect (reload-safe).

Security, in one place (:func:`_guard`):
- a session cookie (``bcsync_session``: HttpOnly, SameSite=Strict, ``Path=/console``, Secure
  when the request came over HTTPS) naming a session in the store (:mod:`.sessions`);
- every POST carries the session's CSRF token (the sign-in form a double-submit token bound to
  a pre-sign-in cookie) and, when the browser sends ``Origin``, comes from this origin;
- a read-only session is refused every action with 403 (the pages also hide the buttons);
- Content-Security-Policy ``script-src 'self'`` and no inline script or style anywhere.

HTTPS is detected from the request itself (direct TLS) or from ``X-Forwarded-Proto: https``.
The header is trusted because it can only make the cookie *stricter*: a client that forges it
gets a Secure cookie its plain-HTTP connection will not send back, which hurts nobody else.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
import structlog
from aiohttp import web

from worker.api.app import ApiToken, authenticate
from worker.bc import BcError
from worker.config.settings import Settings
from worker.console.integration_log import IntegrationLogReader
from worker.console.overview import OBJECT_TYPES, PROBLEMS, Overview
from worker.console.sessions import Session, Sessions, SignInLimiter, client_address
from worker.errors import info
from worker.log import redact_text
from worker.ops.dlq import DlqError
from worker.ops.dlq.index import NONE_KEY, DeadLetterIndex, Query
from worker.ops.dlq.runs import Operation, OperationBusy, Operations
from worker.ops.reconcile import CLASSES, ReconcileError, Reconciler, parse_period
from worker.store import Store

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
PREFIX = "/console"
COOKIE = "bcsync_session"
SIGN_IN_COOKIE = "bcsync_signin"
PER_PAGE = 50
GROUP_BY = {"code": "Error code", "org": "Organization", "type": "Event type"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NOTE_MAX = 4000
REASON_MAX = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ConsoleContext:
    """What the console needs, built by the composition root (``worker.app``).

    ``integration_log`` reads the sync ledger, ``reconciliation`` is ``bc-sync reconcile``'s
    reconciler; each page and its nav entry appear only when the part is given (a process
    without a store for them has neither), never as a stub.
    """

    settings: Settings
    store: Store
    tokens: dict[str, ApiToken]
    index: DeadLetterIndex
    operations: Operations
    overview: Overview
    sessions: Sessions
    limiter: SignInLimiter
    integration_log: IntegrationLogReader | None = None
    reconciliation: Reconciler | None = None


CONSOLE = web.AppKey("console", ConsoleContext)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
SESSION = web.RequestKey("console_session", Session)


class Forbidden(Exception):
    """Answered 403 with a page saying why."""


# --- helpers ---------------------------------------------------------------------------------


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (datetime.now(UTC) - value).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.globals["fix"] = info
    env.globals["qs"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v})
    return env


def _ctx(request: web.Request) -> ConsoleContext:
    return request.app[CONSOLE]


def _session(request: web.Request) -> Session:
    return request[SESSION]


def _actor(request: web.Request) -> str:
    return f"console:{_session(request).token_name}"


def render(
    request: web.Request, template: str, *, status: int = 200, **values: Any
) -> web.Response:
    ctx = _ctx(request)
    session = request.get(SESSION)
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            user=session,
            csrf=session.csrf_secret if session else values.pop("csrf", ""),
            prefix=PREFIX,
            path=request.path,
            nav_log=ctx.integration_log is not None,
            nav_reconciliation=ctx.reconciliation is not None,
            **values,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def _https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by this browser for this request; the CSRF token decides
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.host


def _int(value: str | None, default: int = 1) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, message=message)


def _group_args(data: Any) -> tuple[str, str]:
    by = str(data.get("by") or "code")
    key = str(data.get("key") or "")
    if by not in GROUP_BY or not key:
        raise web.HTTPBadRequest(text="by must be code, org or type, and key is required")
    return by, key[:200]


# --- middleware ------------------------------------------------------------------------------

PUBLIC = ("/console/sign-in", "/console/static/")


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, CSRF, read-only refusal, and HTML error pages."""
    ctx = _ctx(request)
    public = request.path.startswith(PUBLIC)
    session = await ctx.sessions.lookup(request.cookies.get(COOKIE), ctx.tokens)
    if session is not None:
        request[SESSION] = session
    try:
        if session is None and not public:
            if request.method == "POST":
                raise Forbidden("You are not signed in (or your session ended). Sign in again.")
            target = f"{PREFIX}/sign-in?" + urlencode({"next": request.path_qs})
            if request.headers.get("HX-Request"):
                return web.Response(status=401, headers={"HX-Redirect": target})
            raise _redirect(target)
        if request.method == "POST" and session is not None and not public:
            form = await request.post()
            if not _same_origin(request) or not session.csrf_ok(str(form.get("csrf") or "")):
                log.warning("console.csrf_refused", actor=session.token_name, path=request.path)
                raise Forbidden(
                    "This form is not valid any more (its security token is missing or "
                    "wrong). Go back, reload the page and try again."
                )
            if session.read_only and request.path != f"{PREFIX}/sign-out":
                log.info("console.read_only_refused", actor=session.token_name, path=request.path)
                raise Forbidden(
                    "Your API token may only read: it is marked :read in BC_SYNC_API_TOKEN."
                )
        return await handler(request)
    except web.HTTPException:
        raise
    except Forbidden as exc:
        return _error_page(request, 403, "Not allowed", str(exc))
    except OperationBusy as exc:
        if exc.existing:
            raise _redirect(f"{PREFIX}/operations/{exc.existing}") from None
        return _error_page(
            request, 409, "Already running", "An operation on this group is already running."
        )
    except DlqError as exc:
        return _error_page(request, 503, "Dead letters unavailable", str(exc))
    except Exception:
        log.exception("console.request_failed", path=request.path, method=request.method)
        return _error_page(
            request,
            500,
            "Something went wrong",
            "The page could not be shown. The error is in the worker's log.",
        )


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"


# --- sign-in ---------------------------------------------------------------------------------


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=_https(request),
    )


def _next(value: str | None) -> str:
    """Only a path inside the console (never another site: an open redirect)."""
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/organizations"


async def sign_in_form(request: web.Request) -> web.Response:
    if request.get(SESSION) is not None:
        raise _redirect(_next(request.query.get("next")))
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request, "sign_in.html", csrf=token, next=_next(request.query.get("next")), error=None
    )
    _cookie(response, request, SIGN_IN_COOKIE, token)
    return response


async def sign_in(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    form = await request.post()
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    presented = str(form.get("csrf") or "")
    target = _next(str(form.get("next") or ""))
    if (
        not expected
        or not _same_origin(request)
        or not hmac.compare_digest(expected.encode(), presented.encode())
    ):
        raise Forbidden("The sign-in form expired. Reload the page and sign in again.")
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"))
    wait = await ctx.limiter.retry_after(address)
    if wait is not None:
        log.warning("console.sign_in_limited", client=address)
        response = render(
            request,
            "sign_in.html",
            status=429,
            csrf=expected,
            next=target,
            error=f"Too many failed sign-ins. Try again in {math.ceil(wait / 60)} min.",
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    token = str(form.get("token") or "")
    entry = authenticate(ctx.tokens, token)
    if entry is None:
        await ctx.limiter.failed(address)
        log.warning("console.sign_in_refused", client=address)
        return render(
            request,
            "sign_in.html",
            status=401,
            csrf=expected,
            next=target,
            error="That API token is not valid.",
        )
    raw, _ = await ctx.sessions.create(token.strip(), entry)
    await ctx.sessions.prune()
    log.info("console.signed_in", actor=entry.name, read_only=entry.read_only)
    response = web.HTTPSeeOther(target)
    _cookie(response, request, COOKIE, raw)
    response.del_cookie(SIGN_IN_COOKIE, path=PREFIX)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    await ctx.sessions.end(request.cookies.get(COOKIE))
    log.info("console.signed_out", actor=_session(request).token_name)
    response = web.HTTPSeeOther(f"{PREFIX}/sign-in")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


# --- organizations ---------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    raise _redirect(f"{PREFIX}/organizations")


async def organizations(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    q = request.query
    text = (q.get("q") or "").strip()[:100]
    problem = q.get("problem") or ""
    if problem not in PROBLEMS:
        problem = ""
    page = await ctx.overview.page(text=text, problem=problem, page=_int(q.get("page")))
    template = "_org_rows.html" if request.headers.get("HX-Request") else "organizations.html"
    return render(
        request,
        template,
        page=page,
        text=text,
        problem=problem,
        problems=PROBLEMS,
        object_types=OBJECT_TYPES,
    )


async def organization(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    org = request.match_info["org"]
    health = await ctx.overview.one(org)
    stored = await ctx.overview.stored_config(org)
    if health is None and stored is None:
        return _error_page(
            request, 404, "Unknown organization", f"No organization {org!r} is known here."
        )
    groups = await ctx.index.groups("code", Query(org=org))
    recent_dead = await ctx.index.page(Query(org=org), limit=10)
    notifications = await ctx.overview.recent_notifications(org)
    ledger: list[Any] = []
    if ctx.integration_log is not None:
        ledger = await ctx.integration_log.recent(org, limit=15)
    return render(
        request,
        "organization.html",
        org=org,
        health=health,
        stored=stored,
        groups=groups,
        recent_dead=recent_dead,
        notifications=notifications,
        ledger=ledger,
        object_types=OBJECT_TYPES,
    )


# --- dead letters ----------------------------------------------------------------------------


def _query(request: web.Request) -> Query:
    q = request.query
    return Query(
        archived=q.get("archived") == "1",
        org=q.get("org") or None,
        type=q.get("type") or None,
        code=q.get("code") or None,
        text=(q.get("q") or "").strip()[:100] or None,
    )


async def dead_letters(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    by = request.query.get("by") or "code"
    if by not in GROUP_BY:
        by = "code"
    query = _query(request)
    groups = await ctx.index.groups(by, query)
    active, archived = await ctx.index.totals()
    notes = await ctx.index.notes_for(by)
    running = {(op.group_by, op.group_key): op for op in await ctx.operations.active()}
    template = "_groups.html" if request.headers.get("HX-Request") else "dead_letters.html"
    return render(
        request,
        template,
        by=by,
        group_by=GROUP_BY,
        query=query,
        groups=groups,
        active=active,
        archived_total=archived,
        notes=notes,
        running=running,
    )


async def group(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    by, key = _group_args(request.query)
    query = _query(request).group(by, key)
    total = await ctx.index.count(query)
    pages = max(1, -(-total // PER_PAGE))
    page = min(_int(request.query.get("page")), pages)
    rows = await ctx.index.page(query, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    running = await ctx.operations.active_for(by, key)
    return render(
        request,
        "group.html",
        by=by,
        key=key,
        group_by=GROUP_BY,
        query=query,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        note=await ctx.index.note(by, key),
        running=running,
        none_key=NONE_KEY,
    )


async def message(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    letter_id = request.query.get("id") or ""
    found = await ctx.index.get(letter_id)
    if found is None:
        return _error_page(
            request, 404, "No such dead letter", "It was replayed, purged or never existed."
        )
    row, detail = found
    running = await ctx.operations.active_for("id", row.id)
    return render(request, "message.html", row=row, detail=detail or {}, running=running)


async def confirm(request: web.Request) -> web.Response:
    """The step before an action: how many will go (from the index), and a button."""
    ctx = _ctx(request)
    action = request.match_info["action"]
    if action not in ("replay", "archive", "restore"):
        raise web.HTTPNotFound()
    by, key = _group_args(request.query)
    query = Query(archived=action == "restore").group(by, key)
    count = await ctx.index.count(query)
    running = await ctx.operations.active_for(by, key)
    return _confirm_page(request, action, by, key, count=count, running=running)


def _confirm_page(
    request: web.Request,
    action: str,
    by: str,
    key: str,
    *,
    count: int,
    running: Operation | None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    """The step before an action (and the same page again when the form was incomplete)."""
    return render(
        request,
        "confirm.html",
        status=status,
        action=action,
        by=by,
        key=key,
        group_by=GROUP_BY,
        count=count,
        running=running,
        error=error,
    )


async def act(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    action = request.match_info["action"]
    form = await request.post()
    if action == "replay-one":
        letter_id = str(form.get("id") or "")[:200]
        if not letter_id:
            raise web.HTTPBadRequest(text="id is required")
        op = await ctx.operations.submit(
            "replay", "id", letter_id, actor=_actor(request), expected=1
        )
        raise _redirect(f"{PREFIX}/operations/{op.id}")
    if action not in ("replay", "archive", "restore"):
        raise web.HTTPNotFound()
    by, key = _group_args(form)
    reason = None
    if action == "archive":
        reason = str(form.get("reason") or "").strip()[:REASON_MAX]
        if not reason:
            return _confirm_page(
                request,
                action,
                by,
                key,
                count=await ctx.index.count(Query().group(by, key)),
                running=None,
                error="Say why these dead letters are archived (the reason is kept with them).",
                status=422,
            )
    expected = await ctx.index.count(Query(archived=action == "restore").group(by, key))
    op = await ctx.operations.submit(
        action,  # type: ignore[arg-type]
        by,
        key,
        actor=_actor(request),
        reason=reason,
        expected=expected,
    )
    raise _redirect(f"{PREFIX}/operations/{op.id}")


async def note(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    form = await request.post()
    by, key = _group_args(form)
    text = str(form.get("note") or "")[:NOTE_MAX]
    await ctx.index.set_note(by, key, text, author=_actor(request))
    log.info(
        "audit",
        action="dlq.note",
        actor=_actor(request),
        group_by=by,
        key=key,
        removed=not text.strip(),
    )
    raise _redirect(f"{PREFIX}/dead-letters/group?" + urlencode({"by": by, "key": key}))


async def operation(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    op = await ctx.operations.get(request.match_info["id"])
    if op is None:
        return _error_page(request, 404, "No such operation", "Unknown id.")
    remaining = None
    if not op.active and op.group_by != "id":
        # What is still where the operation took from (e.g. dead letters that failed again).
        source = Query(archived=op.kind == "restore").group(op.group_by, op.group_key)
        remaining = await ctx.index.count(source)
    if request.headers.get("HX-Request"):
        response = render(request, "_progress.html", op=op, group_by=GROUP_BY, remaining=remaining)
        if not op.active:
            # htmx stops polling on 286; the fragment also carries no trigger any more.
            response.set_status(286)
        return response
    return render(request, "operation.html", op=op, group_by=GROUP_BY, remaining=remaining)


# --- integration log -------------------------------------------------------------------------


async def integration_log(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    log_reader = ctx.integration_log
    if log_reader is None:
        raise web.HTTPNotFound()
    q = request.query
    org = (q.get("org") or "").strip()
    number = (q.get("number") or "").strip()
    object_type = q.get("type") or ""
    found: list[Any] = []
    chosen: Any = None
    error = None
    if org and number:
        try:
            found = await log_reader.find(org, number, object_type or None)
        except ValueError as exc:
            error = str(exc)
        if len(found) == 1:
            chosen = await log_reader.detail(org, found[0]["object_type"], found[0]["moment_id"])
    if org and q.get("id") and q.get("type"):
        chosen = await log_reader.detail(org, q["type"], q["id"])
    return render(
        request,
        "integration_log.html",
        org=org,
        number=number,
        object_type=object_type,
        found=found,
        chosen=chosen,
        error=error,
        object_types=OBJECT_TYPES,
    )


# --- reconciliation --------------------------------------------------------------------------

CLASS_LABELS = {
    "missing_in_bc": "Missing in BC",
    "duplicated_in_bc": "Duplicated in BC",
    "different": "Different",
    "unknown_in_bc": "Unknown in BC",
    "matched": "Matched",
}
ROWS_SHOWN = 500


async def reconciliation(request: web.Request) -> web.Response:
    """``bc-sync reconcile`` for one organization and period: the same classes and rows (it
    reads BC, so it runs when asked, never on its own)."""
    ctx = _ctx(request)
    reconciler = ctx.reconciliation
    if reconciler is None:
        raise web.HTTPNotFound()
    q = request.query
    org = (q.get("org") or "").strip()
    start, end = q.get("from") or "", q.get("to") or ""
    report: Any = None
    error = None
    if org and (start or end):
        try:
            period = parse_period(start, end)
            report = (await reconciler.run(org, period)).to_dict()
            log.info("console.reconciled", actor=_session(request).token_name, org=org)
        except ReconcileError as exc:
            error = exc.message
        except BcError as exc:
            error = "Business Central could not be read: " + redact_text(
                exc.message or type(exc).__name__
            )
    return render(
        request,
        "reconciliation.html",
        org=org,
        start=start,
        end=end,
        report=report,
        error=error,
        classes=CLASSES,
        labels=CLASS_LABELS,
        rows_shown=ROWS_SHOWN,
    )


# --- the sub-application ---------------------------------------------------------------------


def console_app(ctx: ConsoleContext) -> web.Application:
    """The console, to mount with ``app.add_subapp("/console", console_app(ctx))``."""
    app = web.Application(middlewares=[_guard], client_max_size=256 * 1024)
    app[CONSOLE] = ctx
    app[TEMPLATES] = _environment()
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", home)
    app.router.add_get("/sign-in", sign_in_form)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_post("/sign-out", sign_out)
    app.router.add_get("/organizations", organizations)
    app.router.add_get("/organizations/{org}", organization)
    app.router.add_get("/dead-letters", dead_letters)
    app.router.add_get("/dead-letters/group", group)
    app.router.add_get("/dead-letters/message", message)
    app.router.add_post("/dead-letters/note", note)
    app.router.add_get("/dead-letters/{action}", confirm)
    app.router.add_post("/dead-letters/{action}", act)
    app.router.add_get("/operations/{id}", operation)
    app.router.add_get("/log", integration_log)
    app.router.add_get("/reconciliation", reconciliation)
    app.router.add_static("/static/", HERE / "static", append_version=True)
    return app


def add_console(app: web.Application, ctx: ConsoleContext) -> None:
    """Mount the console on the api role's application at ``/console``."""

    async def bare(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{PREFIX}/")

    app.router.add_get(PREFIX, bare)
    app.add_subapp(PREFIX, console_app(ctx))
