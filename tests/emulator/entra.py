"""Microsoft Entra ID look-alike: OpenID discovery and the client-credentials token endpoint.

Real msal talks to it (stack-notes §2): the authority is ``{emulator url}/{tenant}``, the
discovery document advertises https endpoints of this server, tokens are opaque random strings
bound to (tenant, client), with ``expires_in`` 3599 by default.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Mapping
from typing import Any

from .entities import GUID_RE
from .errors import EntraError
from .store import Tenant, Token, World

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
_OIDC_SCOPES = {"openid", "profile", "offline_access"}


def timestamp() -> str:
    """Entra's error timestamp form, e.g. ``2026-11-20 10:15:02Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def unknown_tenant(ident: str, error: str = "invalid_request") -> EntraError:
    if not GUID_RE.match(ident) and "." not in ident:
        return EntraError(
            400,
            error,
            900023,
            f"Specified tenant identifier '{ident}' is neither a valid DNS name, nor a valid "
            "external domain.",
        )
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{ident}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def discovery(world: World, base_url: str, tenant_ident: str) -> dict[str, Any]:
    """``GET /{tenant}/v2.0/.well-known/openid-configuration``.

    Unknown tenant → 400 AADSTS90002. Choice: ``error`` is ``invalid_tenant`` here (what Entra's
    discovery endpoint answers) and ``invalid_request`` on the token endpoint; msal turns either
    into a ValueError at construction.
    """
    tenant = world.tenant(tenant_ident)
    if tenant is None:
        raise unknown_tenant(tenant_ident, "invalid_tenant")
    base = f"{base_url}/{tenant.id}"
    return {
        "issuer": f"{base}/v2.0",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "jwks_uri": f"{base_url}/{tenant.id}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "request_uri_parameter_supported": False,
    }


def issue_token(
    world: World, tenant_ident: str, form: Mapping[str, str], lifetime_s: int
) -> tuple[Tenant, str, dict[str, Any]]:
    """``POST /{tenant}/oauth2/v2.0/token`` (client credentials) → (tenant, client id, answer)."""
    tenant = world.tenant(tenant_ident)
    if tenant is None:
        raise unknown_tenant(tenant_ident)
    grant = form.get("grant_type", "")
    if grant != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )
    client_id = form.get("client_id", "").strip().lower()
    if not client_id:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    app = tenant.apps.get(client_id)
    if app is None:
        shown = tenant.domains[0] if tenant.domains else tenant.id
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{shown}'. "
            "This can happen if the application has not been installed by the administrator of "
            "the tenant or consented to by any user in the tenant. You may have sent your "
            "authentication request to the wrong tenant.",
        )
    secret = form.get("client_secret")
    if not secret:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    if not secrets.compare_digest(secret.encode(), app.secret.encode()):
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            "client secret value, not the client secret ID, for a secret added to app "
            f"'{client_id}'.",
        )
    scopes = [s for s in form.get("scope", "").split() if s not in _OIDC_SCOPES]
    if not scopes:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    for scope in scopes:
        if not scope.endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        if scope.rstrip("/").lower() != BC_SCOPE.lower():
            resource = scope.removesuffix("/.default")
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant.id}. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
    value = secrets.token_urlsafe(48)
    world.tokens[value] = Token(value, tenant.id, client_id, time.monotonic() + lifetime_s)
    if len(world.tokens) % 1000 == 0:  # now and then, drop expired tokens (long benchmarks)
        now = time.monotonic()
        for k in [k for k, t in world.tokens.items() if t.expires_at <= now]:
            del world.tokens[k]
    return (
        tenant,
        client_id,
        {
            "token_type": "Bearer",
            "expires_in": lifetime_s,
            "ext_expires_in": lifetime_s,
            "access_token": value,
        },
    )


def expire_tokens(world: World, tenant_id: str) -> int:
    n = 0
    now = time.monotonic()
    for tok in world.tokens.values():
        if tok.tenant_id == tenant_id and tok.expires_at > now:
            tok.expires_at = now
            n += 1
    return n
