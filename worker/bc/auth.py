"""Tokens from Microsoft Entra ID (client-credentials grant through msal).

One msal ``ConfidentialClientApplication`` per (authority, tenant, client id, secret), kept
while it is used so its token cache is reused: at most ``max_apps`` of them (least recently
used go first; an app unused for APP_IDLE_S goes anyway), all sharing one HTTP session, so
memory follows the organizations that are active, not the configured ones. msal is blocking
(its constructor already GETs the OpenID discovery document), so building an app and asking it
for a token run in a thread. The token last handed out is remembered too, so a request
normally costs no thread hop at all.

Entra's answers are mapped to :class:`BcAuthError` with the integration field a user must fix;
messages are plain words and never contain the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.cookiejar
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
import structlog
from pydantic import SecretStr

from worker.bc.errors import BcAuthError, BcError, BcUnavailable
from worker.bc.odata import ACCEPT_LANGUAGE, is_valid_tenant
from worker.metrics import BC_TOKEN_REQUESTS

log = structlog.get_logger(__name__)

SCOPE = "https://api.businesscentral.dynamics.com/.default"
MICROSOFT_AUTHORITY_HOSTS = frozenset({"login.microsoftonline.com"})
# msal itself treats a token expiring within 5 minutes as expired; do the same.
EXPIRY_MARGIN_S = 300.0
# After a 5xx from Entra, msal refuses to ask again for this long (stack-notes §2).
MSAL_5XX_THROTTLE_S = 5.5
# An msal app unused this long is dropped (its token has expired by then anyway: Entra's last
# about an hour); the next request builds it again (one discovery GET, one token request).
APP_IDLE_S = 3600.0
# How often at most the idle apps are looked for (a scan of the registry).
SWEEP_EVERY_S = 60.0

_AADSTS = re.compile(r"AADSTS(\d+)")
# msal's text when OpenID discovery answers 4xx: "OIDC Discovery failed on … HTTP status: 429"
_DISCOVERY_STATUS = re.compile(r"HTTP status: (\d{3})")
# Entra error number → (integration field, what to tell the user).
_FIELD_ERRORS: dict[int, tuple[str, str]] = {
    7000215: ("client_secret", "Microsoft Entra ID rejected the client secret."),
    7000222: ("client_secret", "The client secret has expired; create a new one."),
    7000216: ("client_secret", "Microsoft Entra ID needs a client secret for this app."),
    90002: ("tenant_id", "Microsoft Entra ID does not know this tenant ID."),
    900023: ("tenant_id", "The tenant ID is not valid."),
    90023: ("tenant_id", "The tenant ID is not valid."),
    700016: ("client_id", "The app (client ID) is not registered in this tenant."),
    700024: ("client_id", "The app (client ID) is not valid for this tenant."),
    7000112: ("client_id", "The app (client ID) is disabled in this tenant."),
    65001: ("client_id", "The app has no admin consent for Business Central in this tenant."),
}


class _TimeoutSession(requests.Session):
    """requests session with a default timeout (msal ignores its own ``timeout=`` once it is
    given an ``http_client``)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class _Key:
    authority: str
    tenant: str
    client_id: str
    secret_digest: str  # a changed secret needs a new app; the key never holds the secret


class _Entry:
    __slots__ = ("app", "expires_at", "last_used", "lock", "token")

    def __init__(self, now: float) -> None:
        self.app: msal.ConfidentialClientApplication | None = None
        self.lock = asyncio.Lock()
        self.token: str | None = None
        self.expires_at = 0.0
        self.last_used = now


def _unavailable(message: str, **kwargs: Any) -> BcUnavailable:
    """Entra ID could not answer (counted as a token request error); for ``raise … from``."""
    BC_TOKEN_REQUESTS.labels("error").inc()
    return BcUnavailable(message, **kwargs)


def entra_error(result: dict[str, Any]) -> BcError:
    """The typed error of an msal error dict (``error``, ``error_codes``, ``error_description``)."""
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    description = str(result.get("error_description") or "")
    codes += [int(c) for c in _AADSTS.findall(description)]
    error = str(result.get("error") or "")
    corr = result.get("correlation_id")
    corr = str(corr) if corr else None
    for number in codes:
        if number in _FIELD_ERRORS:
            field, message = _FIELD_ERRORS[number]
            return BcAuthError(message, code=f"AADSTS{number}", correlation_id=corr, field=field)
    if error in ("temporarily_unavailable", "server_error"):
        return BcUnavailable(
            "Microsoft Entra ID is temporarily unavailable.", code=error, correlation_id=corr
        )
    code = f"AADSTS{codes[0]}" if codes else (error or None)
    if error == "invalid_client":
        return BcAuthError(
            "Microsoft Entra ID rejected the app's credentials (client ID or secret).",
            code=code,
            correlation_id=corr,
            field="client_secret",
        )
    return BcAuthError(
        f"Microsoft Entra ID refused a token ({code or 'no error code'}).",
        code=code,
        correlation_id=corr,
    )


class TokenProvider:
    """Access tokens per (tenant, client id, secret) for the BC scope."""

    def __init__(
        self,
        authority_url: str,
        *,
        ca_file: Path | str | None = None,
        timeout_s: float = 15.0,
        max_apps: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority_url = authority_url.rstrip("/")
        self.ca_file = str(ca_file) if ca_file else None
        self.timeout_s = timeout_s
        self._max_apps = max_apps
        self._clock = clock
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._swept_at = clock()
        self._session: _TimeoutSession | None = None
        host = urlsplit(self.authority_url).hostname or ""
        # Instance discovery asks login.microsoftonline.com about the authority; for any other
        # authority (a sovereign cloud proxy, the emulator) it would fail without network.
        self._instance_discovery = host.lower() in MICROSOFT_AUTHORITY_HOSTS

    def _key(self, tenant: str, client_id: str, secret: SecretStr) -> _Key:
        digest = hashlib.sha256(secret.get_secret_value().encode()).hexdigest()
        return _Key(self.authority_url, tenant.lower(), client_id.lower(), digest)

    def __len__(self) -> int:
        """msal applications held now."""
        return len(self._entries)

    def _entry(self, key: _Key) -> _Entry:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.last_used = now
            return entry
        if now - self._swept_at >= SWEEP_EVERY_S:
            self._swept_at = now
            self._evict(lambda e: now - e.last_used > APP_IDLE_S)
        if len(self._entries) >= self._max_apps:
            self._evict(lambda e: True, keep=self._max_apps - 1)
        entry = self._entries[key] = _Entry(now)
        return entry

    def _evict(self, expired: Callable[[_Entry], bool], keep: int = 0) -> None:
        """Drop entries (least recently used first) for which ``expired(entry)`` holds, while
        more than ``keep`` remain. An entry whose lock is held is being built or refreshed:
        dropping it would let the next caller start a second fetch beside it, so it stays
        (even beyond the cap: there are only as many as token requests in flight)."""
        for key, entry in list(self._entries.items()):
            if len(self._entries) <= keep:
                return
            if not entry.lock.locked() and expired(entry):
                del self._entries[key]

    def _shared_session(self) -> _TimeoutSession:
        """One HTTP session for every msal app: one connection pool and TLS context for Entra
        instead of one per organization (called in msal's thread; a race only builds a spare)."""
        if self._session is None:
            session = _TimeoutSession(self.timeout_s)
            session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
            session.verify = self.ca_file or True
            # Entra's error_description follows the request's language too; the worker reads
            # only its AADSTS numbers (language-neutral), and asks for English for the logs.
            session.headers["Accept-Language"] = ACCEPT_LANGUAGE
            # trust_env=False also drops proxy variables; keep honouring HTTPS_PROXY / NO_PROXY.
            session.proxies.update(requests.utils.get_environ_proxies(self.authority_url))
            # Shared by every tenant's app: keep no cookies, so none passes between tenants.
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            self._session = session
        return self._session

    def _build_app(
        self, tenant: str, client_id: str, secret: str
    ) -> msal.ConfidentialClientApplication:
        kwargs: dict[str, Any] = {}
        if not self._instance_discovery:
            kwargs["instance_discovery"] = False
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=secret,
            authority=f"{self.authority_url}/{tenant}",
            http_client=self._shared_session(),
            **kwargs,
        )

    def close(self) -> None:
        """Close the shared HTTP session (its pooled connections to Entra)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    async def token(
        self,
        tenant: str,
        client_id: str,
        secret: SecretStr,
        *,
        refresh_after: str | None = None,
    ) -> str:
        """A valid access token. ``refresh_after`` = a token BC refused: if it is still the one
        in use, drop it from msal's cache and fetch a new one (concurrent callers share one
        refresh)."""
        if not is_valid_tenant(tenant):
            raise BcAuthError(
                "The tenant ID must be a GUID or a domain such as contoso.onmicrosoft.com.",
                code="InvalidTenant",
                field="tenant_id",
            )
        if not client_id:
            raise BcAuthError("No client ID is configured.", code="NoClientId", field="client_id")
        entry = self._entry(self._key(tenant, client_id, secret))
        now = time.monotonic()
        if refresh_after is None and entry.token and entry.expires_at - now > EXPIRY_MARGIN_S:
            return entry.token
        async with entry.lock:
            now = time.monotonic()
            fresh_needed = refresh_after is not None and entry.token == refresh_after
            if not fresh_needed and entry.token and entry.expires_at - now > EXPIRY_MARGIN_S:
                return entry.token
            if entry.app is None:
                entry.app = await self._call(
                    self._build_app, tenant, client_id, secret.get_secret_value()
                )
            app = entry.app
            if fresh_needed:
                entry.token = None
                await asyncio.to_thread(app.remove_tokens_for_client)
            result: dict[str, Any] = await self._call(app.acquire_token_for_client, scopes=[SCOPE])
            if "access_token" not in result:
                BC_TOKEN_REQUESTS.labels("rejected").inc()
                err = entra_error(result)
                log.warning(
                    "bc.token.rejected",
                    tenant=tenant,
                    client_id=client_id,
                    code=err.code,
                    field=err.field,
                )
                raise err
            if result.get("token_source") != "cache":
                BC_TOKEN_REQUESTS.labels("ok").inc()
                log.debug("bc.token.acquired", tenant=tenant, client_id=client_id)
            entry.token = str(result["access_token"])
            entry.expires_at = time.monotonic() + float(result.get("expires_in") or 0)
            return entry.token

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking msal call in a thread, mapping its failures to typed errors."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except BcError:
            raise
        except msal.exceptions.MsalServiceError as exc:  # 5xx from Entra
            # msal answers every call within the next 5 s with the same error without asking
            # Entra again, so an earlier retry is wasted.
            raise _unavailable(
                "Microsoft Entra ID answered with a server error.",
                code="EntraServerError",
                retry_after=MSAL_5XX_THROTTLE_S,
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise _unavailable(
                "The certificate of Microsoft Entra ID's host is not trusted.",
                code="TlsError",
                retryable=False,
            ) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise _unavailable(
                "Microsoft Entra ID could not be reached.", code="EntraUnreachable"
            ) from exc
        except requests.exceptions.HTTPError as exc:  # 5xx on OpenID discovery
            raise _unavailable(
                "Microsoft Entra ID answered with a server error.", code="EntraServerError"
            ) from exc
        except ValueError as exc:
            # msal raises ValueError when OpenID discovery of the tenant fails with a 4xx: the
            # tenant does not exist.
            text = str(exc)
            status = _DISCOVERY_STATUS.search(f"{text} {exc.__context__ or ''}")
            if status and int(status.group(1)) in (408, 429):
                # Throttled or timed out: the tenant exists, Entra only asked us to wait.
                raise _unavailable(
                    "Microsoft Entra ID is busy (tenant discovery was throttled).",
                    code="EntraThrottled",
                    retry_after=1.0,
                ) from exc
            BC_TOKEN_REQUESTS.labels("rejected").inc()
            # msal wraps the discovery failure (which holds Entra's answer) in its own message.
            codes = _AADSTS.findall(f"{text} {exc.__context__ or ''}")
            code = f"AADSTS{codes[0]}" if codes else "TenantDiscoveryFailed"
            if "discovery" in text.lower() or "authority" in text.lower():
                raise BcAuthError(
                    "Microsoft Entra ID does not know this tenant ID.", code=code, field="tenant_id"
                ) from exc
            raise
