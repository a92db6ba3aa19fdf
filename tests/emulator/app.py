"""The aiohttp application: BC URL space, Entra look-alike, control API, limits and faults.

Request pipeline for BC (``/v2.0/...``)::

    log → fault match (expire_tokens) → rate window → concurrency slot (queue)
        → latency (global + faults) → hang / drop / status fault → auth → route → reply → release

Paths are split from ``request.raw_path`` *before* percent-decoding each segment, so ``%2F``
inside ``Company('A%2FB')`` never splits the path (aiohttp's ``match_info`` is decoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from . import entra, language
from .batch import count_operations, handle_batch
from .bc_api import JSON_CT, ApiCtx, ApiRequest, handle_api
from .errors import BCError, EntraError, Reply, invalid_credentials, resource_not_found
from .faults import STATUS_BODIES, FaultRule, Faults
from .limits import Limiter, LimitExceeded, LimitsConfig, SubjectState
from .odatav4 import handle_odatav4
from .reqlog import RequestLog, redact_form
from .store import Tenant, Token, World


def json_response(reply: Reply) -> web.Response:
    headers = {"OData-Version": "4.0", **reply.headers}
    if reply.body is None:
        return web.Response(status=reply.status, headers=headers)
    headers["Content-Type"] = JSON_CT
    text = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(status=reply.status, body=text.encode(), headers=headers)


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def error_code(reply: Reply) -> str | None:
    body = reply.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def limit_reply(exc: LimitExceeded) -> Reply:
    code, text = STATUS_BODIES[exc.status]
    err = BCError(exc.status, code, text)
    if exc.retry_after is not None:
        err.headers["Retry-After"] = _fmt_seconds(exc.retry_after)
    return err.reply()


def fault_reply(rule: FaultRule) -> Reply:
    code, text = STATUS_BODIES[rule.status]
    err = BCError(rule.status, code, text)
    if rule.retry_after is not None:
        err.headers["Retry-After"] = _fmt_seconds(float(rule.retry_after))
    return err.reply()


class _NoAnswer(Exception):
    """The request ends without an HTTP answer (hang / drop faults)."""


class Emulator:
    """All state and behaviour; :meth:`build_app` wires it into aiohttp."""

    def __init__(self, *, fault_seed: int | None = 0) -> None:
        self.world = World()
        self.limits = LimitsConfig()
        self.limiter = Limiter(self.limits)
        self.faults = Faults(fault_seed)
        self.log = RequestLog(self.limits.request_log_size)
        self.closing = asyncio.Event()
        self.ca_file: str | None = None

    # ---- wiring

    def build_app(self) -> web.Application:
        from .control import add_control_routes

        app = web.Application(client_max_size=64 * 1024 * 1024)
        add_control_routes(app, self)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self.discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_route("*", "/v2.0/{tail:.*}", self.bc)
        return app

    def tenant_keys(self, tenant: Tenant | None, segment: str | None) -> set[str]:
        keys = {segment.lower()} if segment else set()
        if tenant is not None:
            keys.add(tenant.id)
            keys.update(d.lower() for d in tenant.domains)
        return keys

    def resolve_tenant_id(self, ident: str | None) -> str | None:
        if ident is None:
            return None
        t = self.world.tenant(ident)
        return t.id if t else ident.lower()

    # ---- faults shared by BC and Entra

    async def _apply_latency(self, fired: list[FaultRule]) -> None:
        delay = self.limits.latency_ms + sum(r.latency_ms for r in fired if r.kind == "latency")
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    async def _terminal_fault(
        self, request: web.Request, fired: list[FaultRule], entry: dict[str, Any]
    ) -> Reply | None:
        rule = next((r for r in fired if r.kind in ("status", "hang", "drop")), None)
        if rule is None:
            return None
        entry["fault"] = rule.kind
        if rule.kind == "status":
            return fault_reply(rule)
        if rule.kind == "hang":
            await self._hang(request)
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise _NoAnswer

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client gives up (its connection closes) or the server stops."""
        while not self.closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 0.05)

    # ---- Entra

    async def discovery(self, request: web.Request) -> web.StreamResponse:
        seg = request.match_info["tenant"]
        tenant = self.world.tenant(seg)
        entry = self.log.start(
            method="GET",
            path=request.path,
            raw_path=request.raw_path.partition("?")[0],
            query=request.query_string,
            tenant=tenant.id if tenant else seg,
            client=None,
            accept_language=request.headers.get("Accept-Language"),
        )
        return await self._entra(
            request,
            entry,
            tenant,
            seg,
            lambda: (200, entra.discovery(self.world, self.base_url(request), seg)),
        )

    async def token(self, request: web.Request) -> web.StreamResponse:
        seg = request.match_info["tenant"]
        tenant = self.world.tenant(seg)
        raw = (await request.read()).decode("utf-8", "replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        entry = self.log.start(
            method="POST",
            path=request.path,
            raw_path=request.raw_path.partition("?")[0],
            query=request.query_string,
            tenant=tenant.id if tenant else seg,
            client=form.get("client_id"),
            body=redact_form(raw),
            accept_language=request.headers.get("Accept-Language"),
        )

        def run() -> tuple[int, dict[str, Any]]:
            t, client, body = entra.issue_token(self.world, seg, form, self.limits.token_lifetime_s)
            self.limiter.state((t.id, client)).token_requests += 1
            return 200, body

        return await self._entra(request, entry, tenant, seg, run)

    async def _entra(
        self, request: web.Request, entry: dict[str, Any], tenant: Tenant | None, seg: str, run: Any
    ) -> web.StreamResponse:
        fired = self.faults.match(self.tenant_keys(tenant, seg), request.method, request.path)
        fired = [r for r in fired if not r.after]  # "after" faults are for BC endpoints
        try:
            await self._apply_latency(fired)
            faulted = await self._terminal_fault(request, fired, entry)
        except _NoAnswer:
            return web.Response(status=499)
        if faulted is not None:
            status, body = (
                faulted.status,
                {
                    "error": "temporarily_unavailable",
                    "error_description": f"AADSTS50000: emulated fault (HTTP {faulted.status}).",
                },
            )
        else:
            try:
                status, body = run()
            except EntraError as e:
                status, body = e.status, e.body(entra.timestamp())
        self.log.finish(
            entry, status, body.get("error") if isinstance(body.get("error"), str) else None
        )
        resp = web.json_response(body, status=status)
        if faulted is not None:
            resp.headers.update({k: v for k, v in faulted.headers.items() if k == "Retry-After"})
        resp.headers["Cache-Control"] = "no-store, no-cache"
        return resp

    @staticmethod
    def base_url(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    # ---- Business Central

    async def bc(self, request: web.Request) -> web.StreamResponse:
        path_raw, _, query_raw = request.raw_path.partition("?")
        raw_segs = path_raw.split("/")
        segs = [unquote(s, errors="replace") for s in raw_segs]
        decoded = "/".join(segs)
        if len(segs) > 3 and segs[3] in ("api", "ODataV4") and segs[2] not in ("api", "ODataV4"):
            tenant_seg: str | None = None  # /v2.0/{environment}/api/... (tenant from the token)
            env_i = 2
        else:
            tenant_seg = segs[2] if len(segs) > 2 else ""
            env_i = 3
        auth = request.headers.get("Authorization", "")
        token_value = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        tok = self.world.tokens.get(token_value) if token_value else None
        if tenant_seg is not None:
            tenant = self.world.tenant(tenant_seg) if tenant_seg else None
        else:
            tenant = self.world.tenants.get(tok.tenant_id) if tok else None
        body = await request.read() if request.can_read_body else b""
        accept_language = request.headers.get("Accept-Language")
        entry = self.log.start(
            method=request.method,
            path=decoded,
            raw_path=path_raw,
            query="&".join(f"{k}={v}" for k, v in parse_qsl(query_raw, keep_blank_values=True)),
            tenant=tenant.id if tenant else tenant_seg,
            client=tok.client_id if tok else None,
            body=body.decode("utf-8", "replace") if body else None,
            accept_language=accept_language,
        )
        fired = self.faults.match(self.tenant_keys(tenant, tenant_seg), request.method, decoded)
        for rule in fired:
            if rule.kind == "expire_tokens":
                target = self.resolve_tenant_id(rule.tenant) or (tenant.id if tenant else None)
                if target:
                    entra.expire_tokens(self.world, target)
                entry["fault"] = "expire_tokens"
        valid = tok is not None and tok.expires_at > time.monotonic()
        st: SubjectState | None = None
        if valid:
            assert tok is not None
            st = self.limiter.state((tok.tenant_id, tok.client_id))
            st.total_requests += 1
            is_batch = request.method == "POST" and segs[-1] == "$batch"
            cost = 1 + count_operations(body) if is_batch else 1
            try:
                self.limiter.take_rate(st, cost)
                await self.limiter.acquire(st)
            except LimitExceeded as exc:
                reply = language.localize(limit_reply(exc), accept_language)
                self.log.finish(entry, reply.status, error_code(reply))
                return json_response(reply)
        try:
            await self._apply_latency(fired)
            before = [r for r in fired if not r.after]
            reply_or_none = await self._terminal_fault(request, before, entry)
            if reply_or_none is None:
                base = self.base_url(request)
                reply_or_none = self._dispatch(
                    request,
                    entry,
                    tok,
                    tenant,
                    segs,
                    raw_segs,
                    env_i,
                    query_raw,
                    body,
                    base,
                    path_raw,
                )
                # "after" faults: the work is done, the answer is lost or replaced.
                late = [r for r in fired if r.after]
                reply_or_none = await self._terminal_fault(request, late, entry) or reply_or_none
            reply = reply_or_none
        except _NoAnswer:
            self.log.finish(entry, None, None)
            return web.Response(status=499)
        finally:
            if st is not None:
                self.limiter.release(st)
        # BC answers in the request's language (bc-api.md Corrections 10; language.py).
        reply = language.localize(reply, accept_language)
        self.log.finish(entry, reply.status, error_code(reply))
        return json_response(reply)

    def _dispatch(
        self,
        request: web.Request,
        entry: dict[str, Any],
        tok: Token | None,
        tenant: Tenant | None,
        segs: list[str],
        raw_segs: list[str],
        env_i: int,
        query_raw: str,
        body: bytes,
        base: str,
        path_raw: str,
    ) -> Reply:
        try:
            if tok is None or tok.expires_at <= time.monotonic():
                raise invalid_credentials()
            if tenant is None or tok.tenant_id != tenant.id:
                raise invalid_credentials()
            env_name = segs[env_i] if len(segs) > env_i else ""
            env = tenant.environment(env_name)
            if env is None:
                # bc-api §1.1 (secondary source): body without a correlation id.
                raise BCError(
                    404, "NoEnvironment", "Environment does not exist.", correlation=False
                )
            app = tenant.apps.get(tok.client_id)
            if app is None or not app.enabled_in_bc:
                # Known to Entra, not set up/enabled in "Microsoft Entra Applications" (bc-api §2)
                raise invalid_credentials()
            rest = segs[env_i + 1 :]
            prefix = base + "/".join(raw_segs[: env_i + 1])
            headers = {k.lower(): v for k, v in request.headers.items()}
            pairs = parse_qsl(query_raw, keep_blank_values=True)
            if rest and rest[0] == "api":
                if len(rest) < 2 or rest[1] != "v2.0":
                    raise resource_not_found(rest[1] if len(rest) > 1 else "api")
                ctx = ApiCtx(
                    self.world, tenant, env, prefix + "/api/v2.0", self.limits.max_page_size
                )
                sub = rest[2:]
                if sub and sub[-1] == "" and len(sub) > 1:
                    sub = sub[:-1]
                req = ApiRequest(request.method, sub, pairs, headers, body, base + path_raw)
                if sub == ["$batch"]:
                    if request.method != "POST":
                        raise BCError(
                            405, "BadRequest_MethodNotAllowed", "Only POST is allowed on $batch."
                        )
                    api_path = "/".join(raw_segs[: env_i + 1]) + "/api/v2.0"

                    def log_inner(op: ApiRequest, reply: Reply) -> None:
                        sub_entry = self.log.start(
                            method=op.method,
                            path=decoded_api_root(segs, env_i) + "/" + "/".join(op.segments),
                            raw_path="",
                            query="&".join(f"{k}={v}" for k, v in op.pairs),
                            tenant=tenant.id,
                            client=tok.client_id,
                            body=op.body.decode("utf-8", "replace") if op.body else None,
                            batch_parent=entry["seq"],
                            accept_language=op.headers.get("accept-language"),
                        )
                        self.log.finish(sub_entry, reply.status, error_code(reply))

                    return handle_batch(
                        ctx, req, api_path, self.limits.batch_max_operations, log_inner
                    )
                return handle_api(ctx, req)
            if rest and rest[0] == "ODataV4":
                ctx = ApiCtx(
                    self.world, tenant, env, prefix + "/ODataV4", self.limits.max_page_size
                )
                req = ApiRequest(request.method, rest[1:], pairs, headers, body, base + path_raw)
                return handle_odatav4(ctx, req)
            raise resource_not_found(rest[0] if rest else env_name)
        except BCError as e:
            return e.reply()


def decoded_api_root(segs: list[str], env_i: int) -> str:
    return "/".join(segs[: env_i + 1]) + "/api/v2.0"
