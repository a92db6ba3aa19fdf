"""What the BC client is configured with: a value object the composition root (``worker.app``)
fills in from the settings, so ``bc`` never reads settings itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worker.bc.pages import ODataServices


@dataclass(frozen=True, slots=True)
class BcEndpoints:
    """Where Business Central and Entra ID answer, what to trust, and the default Entra app."""

    api_url: str = "https://api.businesscentral.dynamics.com"
    authority_url: str = "https://login.microsoftonline.com"
    ca_file: Path | None = None  # extra CA certificate(s) for BC and Entra
    client_id: str | None = None  # the installation's Entra app; a config may name its own
    services: ODataServices = field(default_factory=ODataServices)  # published page names
