"""What the CI-size soak tests (tests/integration/test_chaos*.py) share: time compressed further
than the full size, and the report printed and scanned for secrets."""

from __future__ import annotations

from typing import Any

from tests.chaos.soak import SoakReport
from tests.support.session_checks import SECRET_SCAN

# Chaos every 1-2.5 s, a 0.2 s Retry-After on the injected 429s, hanging requests given up
# after 2 s, a killed worker's invoice claims free after 8 s, a shorter ladder (still longer in
# all than a BC or PostgreSQL outage, so what one holds up is still waiting when it ends).
CI_TIMING: dict[str, Any] = {
    "chaos_every_s": (1.0, 2.5),
    "retry_after_s": 0.2,
    "bc_timeout_s": 2.0,
    "claim_ttl_s": 8.0,
    "retry_delays": "0.25,0.5,1,2,3,3,3,3,3,3,3,3",
    "digest_window_s": 10.0,
}


def show_and_scan(report: SoakReport) -> None:
    """Print the figures and problems; the workers' logs and the digest mails join the
    suite-wide secret scan, with the organizations' secrets."""
    print("\n" + report.figures())
    for problem in report.problems[:40]:
        print(f"PROBLEM: {problem}")
    SECRET_SCAN.add(*report.secrets)
    for log in report.log_files:
        SECRET_SCAN.check(f"chaos output {log.name}", log.read_bytes())
