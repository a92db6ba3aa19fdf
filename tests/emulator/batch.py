"""JSON ``$batch`` (bc-api §5.5): ``POST …/api/v2.0/$batch`` with ``{"requests": [...]}``.

- At most ``batch_max_operations`` (100) operations. UNCONFIRMED error code (bc-api §6): we
  answer 400 ``BadRequest`` with the OData library's batch-quota text.
- ``url`` is relative to the API root (``companies(…)/customers``); an absolute path or URL
  under the same root is accepted too.
- Every operation goes through :func:`bc_api.handle_api`, i.e. the same validation as a single
  request, under the outer request's authentication.
- ``Isolation: snapshot`` runs the batch as one transaction: the first failing operation rolls
  everything back, and every operation's response then carries that failure (its status and
  error body; operations after it are not run). Without it, operations are independent and the
  batch continues after a failure (the behaviour shown by BC's docs sample).
- Rate limit (UNCONFIRMED whether inner operations count): the stricter choice — the batch costs
  1 + number of operations in the sliding window (applied by the HTTP layer, see app.py).
- Language (UNCONFIRMED whether parts inherit the outer ``Accept-Language``; bc-api §5.5 is
  silent): the stricter choice — each operation's error is in the language of *its own*
  ``Accept-Language`` header, Swedish without one (language.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import language
from .bc_api import JSON_CT, ApiCtx, ApiRequest, handle_api
from .errors import BCError, Reply, bad_request, not_implemented, resource_not_found

InnerLog = Callable[[ApiRequest, Reply], None]


def count_operations(body: bytes) -> int:
    """Number of operations in a batch body (0 when it is not a valid JSON batch)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 0
    reqs = doc.get("requests") if isinstance(doc, dict) else None
    return len(reqs) if isinstance(reqs, list) else 0


class _Abort(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _operation(ctx: ApiCtx, api_path: str, op: Any) -> ApiRequest:
    if (
        not isinstance(op, dict)
        or not isinstance(op.get("url"), str)
        or not isinstance(op.get("method"), str)
    ):
        raise bad_request("Invalid Request Body")
    url: str = op["url"]
    if url.startswith(("http://", "https://")):
        parts = urlsplit(url)
        url = parts.path + (f"?{parts.query}" if parts.query else "")
    if url.startswith("/"):
        if not (
            url == api_path or url.startswith(api_path + "/") or url.startswith(api_path + "?")
        ):
            raise resource_not_found(url)
        url = url[len(api_path) :]
    rel = url.lstrip("/")
    path, _, query = rel.partition("?")
    segments = [unquote(s) for s in path.split("/")]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()
    headers = {str(k).lower(): str(v) for k, v in (op.get("headers") or {}).items()}
    body = op.get("body")
    raw = (
        b""
        if body is None
        else body.encode()
        if isinstance(body, str)
        else json.dumps(body).encode()
    )
    return ApiRequest(
        method=op["method"].upper(),
        segments=segments,
        pairs=parse_qsl(query, keep_blank_values=True),
        headers=headers,
        body=raw,
        link_base=f"{ctx.root}/{path}",
    )


def _response(op_id: Any, reply: Reply, op: ApiRequest) -> dict[str, Any]:
    reply = language.localize(reply, op.headers.get("accept-language"))
    headers = {k.lower(): v for k, v in reply.headers.items()}
    if reply.body is not None:
        headers.setdefault("content-type", JSON_CT)
    out: dict[str, Any] = {"id": op_id, "status": reply.status, "headers": headers}
    if reply.body is not None:
        out["body"] = reply.body
    return out


def handle_batch(
    ctx: ApiCtx, req: ApiRequest, api_path: str, max_ops: int, log_inner: InnerLog
) -> Reply:
    try:
        ctype = req.headers.get("content-type", "application/json").lower()
        if ctype.startswith("multipart/"):
            raise not_implemented("multipart $batch (use the JSON batch format)")
        doc = req.json()
        ops = doc.get("requests") if isinstance(doc, dict) else None
        if not isinstance(ops, list):
            raise bad_request("Invalid Request Body")
        if len(ops) > max_ops:
            raise bad_request(
                "The current batch message contains too many parts. "
                f"Only {max_ops} batch parts are allowed."
            )
        inner = [
            (op.get("id") if isinstance(op, dict) else None, _operation(ctx, api_path, op))
            for op in ops
        ]
    except BCError as e:
        return e.reply()
    isolated = req.headers.get("isolation", "").strip().lower() == "snapshot"
    responses: list[dict[str, Any]] = []
    if not isolated:
        for op_id, op in inner:
            reply = handle_api(ctx, op)
            log_inner(op, reply)
            responses.append(_response(op_id, reply, op))
        return Reply(200, {"responses": responses})
    try:
        with ctx.world.tx.transaction():
            for op_id, op in inner:
                reply = handle_api(ctx, op)
                log_inner(op, reply)
                if reply.status >= 400:
                    raise _Abort(reply)
                responses.append(_response(op_id, reply, op))
    except _Abort as abort:
        responses = [_response(op_id, abort.reply, op) for op_id, op in inner]
    return Reply(200, {"responses": responses})
