"""``python -m tests.emulator --port 8443 [--host 127.0.0.1] [--seed demo]``: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
from pathlib import Path

from .seed import DEMO, demo_seed
from .seeding import apply_seed
from .server import READY_PREFIX, EmulatorServer


def banner(url: str, ca_file: Path, seeded: bool) -> str:
    if seeded:
        tenant, client, secret, env = (
            DEMO.tenant_id,
            DEMO.client_id,
            DEMO.client_secret,
            DEMO.environment,
        )
    else:
        tenant, client, secret, env = (
            "<tenant-id>",
            "<client-id>",
            "<client-secret>",
            "<environment>",
        )
    ca = shlex.quote(str(ca_file))
    token_cmd = (
        f"curl -s --cacert {ca} {url}/{tenant}/oauth2/v2.0/token "
        f"-d grant_type=client_credentials -d client_id={client} -d client_secret={secret} "
        "--data-urlencode scope=https://api.businesscentral.dynamics.com/.default"
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    companies = f"{url}/v2.0/{tenant}/{env}/api/v2.0/companies"
    return "\n".join(
        [
            f"Business Central + Entra ID emulator listening on {url}",
            f"  BC_SYNC_BC_API_URL={url}",
            f"  BC_SYNC_AUTHORITY_URL={url}",
            f"  BC_SYNC_CA_FILE={ca_file}",
            f"  Entra discovery: {url}/{tenant}/v2.0/.well-known/openid-configuration",
            f"  BC API:          {url}/v2.0/{tenant}/{env}/api/v2.0/companies",
            f"  control API:     {url}/_emulator/state "
            "(also requests, stats, seed, reset, faults, limits)",
            "Example:",
            f"  TOKEN=$({token_cmd} | {extract})",
            f'  curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN" {companies}',
            "Press Ctrl-C to stop.",
        ]
    )


async def serve(host: str, port: int, seed: str | None, cert_dir: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (
        signal.SIGINT,
        signal.SIGTERM,
    ):  # before the ready line: a quick SIGTERM stops cleanly
        loop.add_signal_handler(sig, stop.set)
    server = EmulatorServer(cert_dir=cert_dir)
    await server.start(host, port)
    if seed == "demo":
        apply_seed(server.emulator.world, demo_seed())
    elif seed:
        apply_seed(server.emulator.world, json.loads(Path(seed).read_text(encoding="utf-8")))
    print(
        READY_PREFIX + json.dumps({"url": server.url, "ca_file": str(server.ca_file)}), flush=True
    )
    print(banner(server.url, server.ca_file, seed == "demo"), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--seed", help="'demo' or a path to a seed JSON file")
    parser.add_argument(
        "--cert-dir", type=Path, help="where to write ca.pem/key.pem (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.seed, args.cert_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
