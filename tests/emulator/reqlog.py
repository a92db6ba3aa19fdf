"""Request log (``GET /_emulator/requests``): bounded, newest last, secrets redacted."""

from __future__ import annotations

import itertools
import re
from collections import deque
from typing import Any

from .entities import now_iso

_SECRET_FIELDS = re.compile(r"(client_secret|client_assertion|password)=[^&]*", re.I)
BODY_LIMIT = 4000


def redact_form(text: str) -> str:
    return _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}=***", text)


class RequestLog:
    def __init__(self, size: int = 20000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = itertools.count(1)

    def resize(self, size: int) -> None:
        if size != self.entries.maxlen:
            self.entries = deque(self.entries, maxlen=max(1, size))

    def start(
        self,
        *,
        method: str,
        path: str,
        raw_path: str,
        query: str,
        tenant: str | None,
        client: str | None,
        body: str | None = None,
        batch_parent: int | None = None,
        accept_language: str | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": next(self._seq),
            "time": now_iso(),
            "tenant": tenant,
            "client": client,
            "method": method,
            "path": path,
            "raw_path": raw_path,
            "query": query,
            "body": None if body is None else body[:BODY_LIMIT],
            "status": None,
            "code": None,
            "fault": None,
            "batch_parent": batch_parent,
            # The language the request asked for (every $batch part has its own).
            "accept_language": accept_language,
        }
        self.entries.append(entry)
        return entry

    @staticmethod
    def finish(entry: dict[str, Any], status: int | None, code: str | None = None) -> None:
        entry["status"] = status
        entry["code"] = code

    def clear(self, tenant: str | None = None) -> None:
        if tenant is None:
            self.entries.clear()
        else:
            kept = [e for e in self.entries if e["tenant"] != tenant]
            self.entries = deque(kept, maxlen=self.entries.maxlen)

    def query(
        self,
        *,
        tenant: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        out = [
            e
            for e in self.entries
            if e["seq"] > since
            and (tenant is None or e["tenant"] == tenant)
            and (path is None or path in e["path"])
            and (method is None or e["method"] == method.upper())
        ]
        return out[-limit:] if limit else out
