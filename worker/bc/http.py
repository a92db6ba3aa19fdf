"""HTTP transport to Business Central: one aiohttp session per process, per-subject limits,
in-process retries, one token refresh on 401, typed errors and metrics.

Retries are safe by construction: 429, 503 and 408 mean BC did not apply the request (throttled,
queued too long, or cancelled and rolled back), and a failed connect means it was never sent,
so any method is repeated. After a timeout, a dropped connection, 502 or 504 the request may
have been applied, so only idempotent requests are repeated; a POST is handed to the caller,
whose find-then-create logic stays exactly-once.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.request import getproxies, proxy_bypass

import aiohttp
import structlog
from pydantic import SecretStr
from yarl import URL

from worker import codec, tracing
from worker.bc.auth import TokenProvider
from worker.bc.errors import BcAuthError, BcError, BcUnavailable, from_response
from worker.bc.limits import LimitConfig, Limiters
from worker.bc.odata import ACCEPT_LANGUAGE, same_origin
from worker.bc.retry import RetryPolicy, call, parse_retry_after
from worker.metrics import BC_LAST_SUCCESS, BC_REQUESTS, BC_RETRIES, BC_THROTTLED, child

log = structlog.get_logger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
# Statuses after which BC did not apply the request: safe to repeat any method.
_NOT_APPLIED = frozenset({408, 429, 503})
# Statuses after which the request may have been applied: repeat idempotent methods only.
_AMBIGUOUS = frozenset({502, 504})
# Answers that count toward the subject's circuit breaker (see worker/bc/limits.py).
_OUTAGE = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Knobs of the BC client (defaults suit BC online)."""

    timeout_s: float = 60.0  # one HTTP request, connect to last byte
    connect_timeout_s: float = 10.0
    token_timeout_s: float = 15.0
    connector_limit: int = 200  # all subjects together; each subject has its own 5
    queue_wait_s: float = 60.0  # longest wait for one of the subject's slots
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: LimitConfig = field(default_factory=LimitConfig)
    max_subjects: int = 1024
    user_agent: str = "bc-sync/0.1"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls BC: the service principal (tenant, client) and its secret."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr

    @property
    def subject(self) -> tuple[str, str]:
        """The key BC's limits apply to."""
        return (self.tenant_id.lower(), self.client_id.lower())


@dataclass(frozen=True, slots=True)
class Response:
    """A successful BC answer: status, headers and the parsed JSON body (None when empty)."""

    status: int
    headers: Mapping[str, str]
    data: Any


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy for ``url`` from HTTPS_PROXY / NO_PROXY (corporate proxies), read once.

    aiohttp's ``trust_env=True`` reads the environment and ~/.netrc in a worker thread twice
    on every request (``make bench``: two thread hops per BC call).
    """
    target = URL(url)
    if target.host and proxy_bypass(target.host):
        return None, None
    raw = getproxies().get(target.scheme)
    if not raw:
        return None, None
    proxy = URL(raw)
    auth = aiohttp.BasicAuth.from_url(proxy) if proxy.user else None
    return proxy.with_user(None), auth


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """System CAs plus the configured CA file (corporate proxy, the emulator's certificate)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class RequestOptions(TypedDict, total=False):
    """What else a BC call may say (:meth:`Transport.request`'s last keyword arguments)."""

    body: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    idempotent: bool | None


@dataclass(frozen=True, slots=True)
class _Call:
    """One BC request as the transport sends it (again on each retry)."""

    method: str
    url: str
    resource: str
    payload: bytes | None
    headers: Mapping[str, str]
    repeatable: bool


class Transport:
    """Sends one logical request: limits, token, retries, error mapping, metrics."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenProvider,
        ca_file: Path | str | None = None,
        options: ClientOptions | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base_prefix = self.base_url + "/"
        self.tokens = tokens
        self.options = options or ClientOptions()
        self.limiters = Limiters(self.options.limits, max_subjects=self.options.max_subjects)
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self._proxy, self._proxy_auth = env_proxy(self.base_url)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.options.connector_limit,
                ssl=ssl_context(self._ca_file),
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.options.timeout_s, connect=self.options.connect_timeout_s
                ),
                headers={
                    "Accept": "application/json",
                    # BC's error messages in English on every request (batch parts: batch_body).
                    "Accept-Language": ACCEPT_LANGUAGE,
                    "User-Agent": self.options.user_agent,
                },
                trust_env=False,  # the proxy comes from env_proxy(), read once
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(
        self,
        principal: Principal,
        method: str,
        url: str,
        *,
        resource: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """One BC call with in-process retries; raises a :class:`BcError` subclass."""
        # The prefix test is exact for the usual URL (built from base_url); anything else gets
        # the full scheme/host/port comparison.
        if not url.startswith(self._base_prefix) and not same_origin(url, self.base_url):
            raise ValueError("refusing to send a BC token to another host")
        method = method.upper()
        repeatable = method in IDEMPOTENT if idempotent is None else idempotent
        payload = None if body is None else codec.dumps(body)

        def on_retry(exc: BaseException, sleep: float) -> None:
            reason = str(exc.status) if isinstance(exc, BcError) and exc.status else None
            reason = reason or (exc.code if isinstance(exc, BcError) and exc.code else "error")
            BC_RETRIES.labels(reason).inc()
            log.info(
                "bc.retry",
                resource=resource,
                method=method,
                reason=reason,
                sleep_s=round(sleep, 2),
            )

        request = _Call(method, url, resource, payload, headers or {}, repeatable)

        def attempt() -> Awaitable[Response]:
            return self._authorized(principal, request)

        return await call(self.options.retry, attempt, on_retry=on_retry)

    async def _authorized(self, principal: Principal, request: _Call) -> Response:
        token = await self.tokens.token(
            principal.tenant_id, principal.client_id, principal.client_secret
        )
        status, resp_headers, raw = await self._limited(principal, request, token)
        if status == 401:
            # The token may have expired early or been revoked: one fresh token, one more try.
            BC_RETRIES.labels("401").inc()
            token = await self.tokens.token(
                principal.tenant_id,
                principal.client_id,
                principal.client_secret,
                refresh_after=token,
            )
            status, resp_headers, raw = await self._limited(principal, request, token)
        method, resource = request.method, request.resource
        if 200 <= status < 300:
            BC_LAST_SUCCESS.set(time.time())
            return Response(status, resp_headers, _json(raw, status))
        retry_after = parse_retry_after(resp_headers.get("Retry-After"))
        err = from_response(status, raw, retry_after=retry_after, what=f"{method} {resource}")
        err.correlation_id = err.correlation_id or resp_headers.get("request-id")
        if isinstance(err, BcAuthError):
            log.warning("bc.auth.rejected", resource=resource, status=status, code=err.code)
            raise err
        if status in _NOT_APPLIED:
            err.retryable = True
        elif status in _AMBIGUOUS:
            err.retryable = request.repeatable
        else:
            err.retryable = False
        raise err

    async def _limited(
        self, principal: Principal, request: _Call, token: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        limiter = self.limiters.get(principal.subject)
        async with limiter.slot(self.options.retry.max_wait_s, self.options.queue_wait_s) as slot:
            try:
                status, resp_headers, raw = await self._send(request, token)
            except BcUnavailable as exc:
                if exc.code != "TlsError":  # a trust problem, not an outage: no breaker
                    slot.failed()
                raise
            if status in _OUTAGE:
                slot.failed()
            elif status == 429:
                BC_THROTTLED.inc()
                retry_after = parse_retry_after(resp_headers.get("Retry-After"))
                slot.throttled(retry_after)
                log.info(
                    "bc.throttled",
                    tenant=principal.tenant_id,
                    resource=request.resource,
                    retry_after=retry_after,
                    limit=limiter.limit,
                )
            return status, resp_headers, raw

    async def _send(self, request: _Call, token: str) -> tuple[int, Mapping[str, str], bytes]:
        method, resource = request.method, request.resource
        all_headers = {"Authorization": f"Bearer {token}", **request.headers}
        if request.payload is not None:
            all_headers.setdefault("Content-Type", "application/json")
        session = self._get_session()
        target = URL(request.url, encoded=True)
        # One span per HTTP request (each retry its own), a child of the consume or poll span.
        with tracing.span(
            f"{method} {resource}",
            kind=tracing.SpanKind.CLIENT,
            attributes=_span_attributes(method, target, resource),
        ) as span:
            return await self._exchange(session, request, target, all_headers, span)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: _Call,
        target: URL,
        all_headers: Mapping[str, str],
        span: tracing.Span,
    ) -> tuple[int, Mapping[str, str], bytes]:
        method, resource, repeatable = request.method, request.resource, request.repeatable
        started = time.perf_counter()
        outcome = "error"
        try:
            async with session.request(
                method,
                target,
                data=request.payload,
                headers=all_headers,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as resp:
                raw = await resp.read()
                outcome = str(resp.status)
                return resp.status, resp.headers, raw  # a read-only view: no copy
        except aiohttp.ClientConnectorCertificateError as exc:
            outcome = "tls_error"
            raise BcUnavailable(
                "The certificate of Business Central's host is not trusted.",
                code="TlsError",
                retryable=False,
            ) from exc
        except aiohttp.ClientSSLError as exc:
            outcome = "tls_error"
            raise BcUnavailable(
                "The TLS connection to Business Central failed.", code="TlsError", retryable=False
            ) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            outcome = "timeout"
            raise BcUnavailable(
                "Connecting to Business Central timed out.", code="ConnectTimeout", retryable=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            outcome = "connection_error"
            raise BcUnavailable(
                "Business Central could not be reached.", code="ConnectionError", retryable=True
            ) from exc
        except TimeoutError as exc:
            outcome = "timeout"
            raise BcUnavailable(
                f"Business Central did not answer within {self.options.timeout_s:g} s.",
                code="Timeout",
                retryable=repeatable,
            ) from exc
        except aiohttp.ClientError as exc:
            outcome = "connection_error"
            raise BcUnavailable(
                "The connection to Business Central broke off.",
                code="ConnectionError",
                retryable=repeatable,
            ) from exc
        finally:
            elapsed = time.perf_counter() - started
            if span.is_recording():
                if outcome.isdigit():
                    span.set_attribute("http.response.status_code", int(outcome))
                if not outcome.startswith("2"):
                    tracing.fail(span, outcome)
            child(BC_REQUESTS, resource, method, outcome).observe(elapsed)
            log.debug(
                "bc.request",
                method=method,
                resource=resource,
                status=outcome,
                ms=round(elapsed * 1000, 1),
            )


def _span_attributes(method: str, target: URL, resource: str) -> tracing.Attributes | None:
    """What a BC request span says: method, host, path and resource. Never the query (OData
    $filter values are Moment data) nor headers (the bearer token) nor bodies."""
    if not tracing.enabled():
        return None
    return {
        "http.request.method": method,
        "server.address": target.host or "",
        "server.port": target.port or 443,
        "url.scheme": target.scheme,
        "url.path": target.raw_path,
        "bc.resource": resource,
    }


def _json(raw: bytes, status: int) -> Any:
    if not raw.strip():
        return None
    try:
        return codec.loads(raw)
    except ValueError as exc:
        raise BcUnavailable(
            f"Business Central answered HTTP {status} with a body that is not JSON.",
            status=status,
            code="InvalidJson",
            retryable=False,
        ) from exc
