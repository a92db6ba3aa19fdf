"""A worker process for the soak: ``bc-sync run --roles consume,notify`` with time compressed.

The soak compresses hours into seconds, as the short retry ladder does: a BC request that hangs
gives up after ``CHAOS_BC_TIMEOUT_S`` (BC online: 60 s), and the invoice claim, ledger claim or
digest lease of a SIGKILLed worker expires after ``CHAOS_CLAIM_TTL_S`` (120 s). Neither is a
setting, so they are set here before the ordinary entry point runs. ``CHAOS_ROLES`` picks the
roles.
"""

from __future__ import annotations

import functools
import os

import worker.bc.client as bc_client
import worker.notify.service as notify_service
import worker.sync.context as sync_context
import worker.sync.tracking as sync_tracking
from worker.bc.http import ClientOptions
from worker.cli import main


def compress_time() -> None:
    timeout = float(os.environ.get("CHAOS_BC_TIMEOUT_S", "60"))
    short = functools.partial(
        ClientOptions, timeout_s=timeout, connect_timeout_s=min(timeout, 10.0)
    )
    # BcHub builds ClientOptions() when given none: that name is what it calls.
    setattr(bc_client, "ClientOptions", short)  # noqa: B010
    ttl = float(os.environ.get("CHAOS_CLAIM_TTL_S", "120"))
    sync_context.CLAIM_TTL_S = ttl
    sync_tracking.CLAIM_TTL_S = ttl  # the sync ledger's per-object claims
    notify_service.LEASE_TTL_S = ttl


if __name__ == "__main__":
    compress_time()
    main(["run", "--roles", os.environ.get("CHAOS_ROLES", "consume")])
