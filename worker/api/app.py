"""The admin HTTP API (aiohttp): bearer auth on ``/v1``, health, readiness and metrics, and
one error middleware that answers the error classes of every route.

Route modules add themselves through ``add_routes(app)`` and read their typed dependencies
from :class:`ApiContext` (``request.app[CONTEXT]``), which the composition root fills in.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from worker.api import openapi
from worker.api.models import ErrorAnswer, FieldErrors, Health, Readiness, dump
from worker.api.openapi import Answer, Operation, describe, only_reads
from worker.config.model import ConfigValidationError, FieldError
from worker.config.settings import Settings, SettingsError
from worker.log import register_secret
from worker.ops.dlq import DeadLetters, DlqBusy, DlqError, FilterError
from worker.ops.health import ReadinessCheck
from worker.ops.integration_log import IntegrationLog
from worker.ops.reconcile import Reconciler
from worker.ops.sampler import DeadLetterCounts
from worker.setup.service import ConfigService
from worker.setup.verify import BcUnreachable
from worker.store import StoredConfigError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How long a request waits for another dead-letter operation before answering 409.
DLQ_LOCK_WAIT_S = 10.0
# One section of ``GET …/status``: ``await section(org)`` gives its JSON.
StatusSection = Callable[[str], Awaitable[Any]]


class ServiceUnavailable(Exception):
    """What the route needs does not run in this process (answered 503)."""


@dataclass
class ApiContext:
    """What the routes need, typed; a part whose role does not run in this process is None
    (its routes answer 503). Without ``dead_letters`` each dead-letter call opens its own
    broker connection; ``bc-sync run`` gives the process's one."""

    settings: Settings
    config: ConfigService | None = None
    dead_letters: DeadLetters | None = None
    dead_letter_counts: DeadLetterCounts | None = None
    status_sections: dict[str, StatusSection] = field(default_factory=dict)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    integration_log: IntegrationLog | None = None
    reconciler: Reconciler | None = None

    def __post_init__(self) -> None:
        if self.dead_letters is None:
            self.dead_letters = DeadLetters(self.settings, lock_wait=DLQ_LOCK_WAIT_S)
        if self.dead_letter_counts is None:
            self.dead_letter_counts = DeadLetterCounts(self.dead_letters)

    def config_service(self) -> ConfigService:
        if self.config is None:
            raise ServiceUnavailable("the configuration store is not available in this process")
        return self.config

    def log(self) -> IntegrationLog:
        if self.integration_log is None:
            raise ServiceUnavailable("the integration log is not available in this process")
        return self.integration_log

    def reconciliation(self) -> Reconciler:
        if self.reconciler is None:
            raise ServiceUnavailable("the reconciliation is not available in this process")
        return self.reconciler


CONTEXT = web.AppKey("context", ApiContext)
CALLER = web.RequestKey("caller", str)  # name of the API token that authenticated

# A token followed by this suffix in BC_SYNC_API_TOKEN may read everything and change nothing.
READ_ONLY_SUFFIX = ":read"
# Methods that never change anything; any other method on /v1 is a write, unless its route is
# marked with :func:`~worker.api.openapi.reads` (a POST that only reads: the options call).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ApiToken:
    """One entry of ``BC_SYNC_API_TOKEN``: its name (in every audit line) and whether it is
    limited to reading (``name=token:read``)."""

    name: str
    read_only: bool = False


ACCESS = web.RequestKey("access", ApiToken)  # the token that authenticated


def api_tokens(settings: Settings) -> dict[str, ApiToken]:
    """The admin API's tokens; :class:`SettingsError` when there are none (the ``api`` role
    cannot run without one)."""
    raw = settings.api_token.get_secret_value() if settings.api_token else None
    tokens = parse_tokens(raw)
    if not tokens:
        raise SettingsError(
            "BC_SYNC_API_TOKEN: required by the api role (a token, or name=token pairs "
            "separated by commas; a token followed by :read may only read)"
        )
    return tokens


def parse_tokens(raw: str | None) -> dict[str, ApiToken]:
    """``BC_SYNC_API_TOKEN``: one token, or ``name=token`` pairs separated by commas; a token
    followed by ``:read`` (``ops=…,support=…:read``) is read-only.

    Returns token → :class:`ApiToken`; the name appears in audit log lines, the token never
    does. Each token is registered as a secret, so a log line that quotes one masks it.
    """
    tokens: dict[str, ApiToken] = {}
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        read_only = part.endswith(READ_ONLY_SUFFIX)
        if read_only:
            part = part.removesuffix(READ_ONLY_SUFFIX)
        name, sep, token = part.partition("=")
        if not (sep and name and token):
            name, token = "admin", part
        if token:
            register_secret(token)
            tokens[token] = ApiToken(name.strip(), read_only)
    return tokens


def authenticate(tokens: dict[str, ApiToken], presented: str | None) -> ApiToken | None:
    """The token entry matching ``presented``, compared in constant time against every one
    (so timing shows nothing), or None."""
    if not presented:
        return None
    given = presented.strip().encode()
    found: ApiToken | None = None
    for token, entry in tokens.items():
        if hmac.compare_digest(given, token.encode()):
            found = entry
    return found


def is_write(request: web.Request) -> bool:
    """Whether the request may change something (what a read-only token is refused)."""
    if request.method in SAFE_METHODS:
        return False
    handler = getattr(request.match_info, "handler", None)
    return handler is None or not only_reads(handler)


def forbidden_read_only() -> web.Response:
    return _error(
        "forbidden", 403, "this API token may only read (it is marked :read in BC_SYNC_API_TOKEN)"
    )


def _auth_middleware(tokens: dict[str, ApiToken]) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/") and request.path != "/v1":
            return await handler(request)
        if request.path == openapi.DOCUMENT_PATH and request.method in ("GET", "HEAD"):
            return await handler(request)  # the contract itself: no data, no secret
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        entry = authenticate(tokens, presented) if scheme.lower() == "bearer" else None
        if entry is None:
            return answer(
                ErrorAnswer(error="unauthorized"),
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="bc-sync"'},
            )
        if entry.read_only and is_write(request):
            log.info(
                "api.read_only_refused", actor=entry.name, method=request.method, path=request.path
            )
            return forbidden_read_only()
        request[CALLER] = entry.name
        request[ACCESS] = entry
        return await handler(request)

    return auth


def answer(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer built from its model (``worker.api.models``, as in the OpenAPI document)."""
    return web.json_response(dump(model), status=status, headers=headers)


def field_errors(errors: list[FieldError], status: int = 422) -> web.Response:
    return answer(FieldErrors.of({"errors": errors}), status=status)


def _error(error: str, status: int, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return answer(ErrorAnswer.of(body), status=status)


def _bc_unreachable(exc: BcUnreachable) -> web.Response:
    retry_after = max(1, round(exc.retry_after))
    return answer(
        ErrorAnswer(error="bc_unreachable", message=exc.message, retry_after=retry_after),
        status=502,
        headers={"Retry-After": str(retry_after)},
    )


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The answer for each error class a route may raise; never a stack trace: anything
    unexpected becomes a plain 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConfigValidationError as exc:
        return field_errors(exc.errors)
    except FilterError as exc:
        return field_errors([{"field": exc.field, "code": "invalid", "message": exc.message}])
    except BcUnreachable as exc:
        return _bc_unreachable(exc)
    except ServiceUnavailable as exc:
        return _error("unavailable", 503, str(exc))
    except StoredConfigError as exc:
        return _error("unreadable", 500, str(exc))
    except DlqBusy as exc:
        return _error("busy", 409, str(exc))
    except DlqError as exc:
        return _error("unavailable", 503, str(exc))
    except Exception:
        log.exception("api.request_failed", path=request.path, method=request.method)
        return _error("internal error", 500)


# Answers that several routes share (OpenAPI).
UNAVAILABLE = Answer(
    ErrorAnswer, "What the route needs does not run in this process, or the broker is away."
)
BUSY = Answer(
    ErrorAnswer,
    f"Another dead-letter operation kept the queue for more than {DLQ_LOCK_WAIT_S:g} s.",
)
BC_UNREACHABLE = Answer(
    ErrorAnswer,
    "Business Central or Entra ID could not be reached; nothing was saved. Try again later.",
    headers={"Retry-After": "Seconds to wait (also in `retry_after`)."},
)


@describe(
    Operation(
        summary="Liveness: the process and its event loop answer",
        tag="operations",
        public=True,
        responses={200: Answer(Health, "Alive.")},
    )
)
async def healthz(request: web.Request) -> web.Response:
    """The process and its event loop are alive (the loop answered this request)."""
    return answer(Health(status="ok"))


@describe(
    Operation(
        summary="Readiness: broker connected, consumers registered, store reachable",
        tag="operations",
        public=True,
        description="Each check of this process with its detail; `bc` is informational.",
        responses={
            200: Answer(Readiness, "Every check passed."),
            503: Answer(Readiness, "A check failed (see `checks`)."),
        },
    )
)
async def readyz(request: web.Request) -> web.Response:
    """Ready when every registered check passes: broker, consumers, store, ..."""
    ctx = request.app[CONTEXT]
    results: dict[str, Any] = {}
    ready = True
    for name, check in ctx.readiness.items():
        try:
            ok, detail = await check()
        except Exception as exc:
            ok, detail = False, type(exc).__name__
        results[name] = {"ok": ok, "detail": detail}
        ready = ready and ok
    return answer(
        Readiness.of(
            {"status": "ready" if ready else "unready", "checks": results, "time": time.time()}
        ),
        status=200 if ready else 503,
    )


@describe(
    Operation(
        summary="Prometheus metrics",
        tag="operations",
        public=True,
        responses={
            200: Answer(
                None,
                "The Prometheus text exposition format.",
                media_type="text/plain",
                schema={"type": "string"},
            )
        },
    )
)
async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def create_app(
    ctx: ApiContext, route_modules: Sequence[Callable[[web.Application], None]] = ()
) -> web.Application:
    tokens = api_tokens(ctx.settings) if route_modules else {}
    app = web.Application(
        middlewares=[_errors_middleware, _auth_middleware(tokens)], client_max_size=1024**2
    )
    app[CONTEXT] = ctx
    add_core_routes(app, api=bool(route_modules))
    for add_routes in route_modules:
        add_routes(app)
    return app


def add_core_routes(app: web.Application, *, api: bool) -> None:
    """Health, readiness and metrics (every process); the OpenAPI document (the api role)."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if api:
        openapi.add_route(app)


class ApiServer:
    """The ``api`` role: serves the app on BC_SYNC_HTTP_HOST:BC_SYNC_HTTP_PORT."""

    name = "api"

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # Port 0 (tests): read back the port the OS chose.
        sockets = getattr(site._server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("api.listening", url=f"http://{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
