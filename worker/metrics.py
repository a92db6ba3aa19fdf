"""Every Prometheus metric of the worker, in one place (DESIGN §9).

Labels stay bounded: event types, outcomes, error codes, BC resources and statuses. Moment ids are
never labels; organizations appear only on the poller lags, where one series per connected
organization is what ops asks for.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# Children of labelled metrics by (metric, label values): ``labels()`` validates and locks on
# every call, and the hot path asks for the same few combinations per message and BC request.
_children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
_MAX_CHILDREN = 10_000  # labels are bounded; this only guards against a mistake


def child(metric: M, *values: str) -> M:
    """``metric.labels(*values)`` (positional, in declaration order), remembered."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = metric.labels(*values)
        if len(_children) < _MAX_CHILDREN:
            _children[key] = found
    return found  # type: ignore[return-value]


EVENTS_CONSUMED = Counter(
    "bcsync_events_consumed_total", "Events taken from the exports queue.", ["type"]
)
EVENTS_HANDLED = Counter(
    "bcsync_events_handled_total",
    "Outcome of one delivery: succeeded, skipped, waiting, superseded, retried, dead_lettered, "
    "requeued, parked.",
    ["type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "bcsync_handler_seconds",
    "Time from delivery to outcome, per event type.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PARKED = Counter(
    "bcsync_events_parked_total",
    "Events moved to a retry-ladder queue, not as an attempt, because their organization held its "
    "share of the prefetch.",
    ["type"],
)
RETRIES_RECOVERED = Counter(
    "bcsync_retries_recovered_total",
    "Events on the retry ladder that the broker did not give back in time, published to the "
    "exports queue again by the retry watch.",
    ["type"],
)
RETRIES_UNWATCHED = Counter(
    "bcsync_retries_unwatched_total",
    "Events put on the retry ladder without a record for the retry watch (the store failed).",
)
RETRY_HOPS = Counter(
    "bcsync_retry_hops_total", "Events sent to a retry-ladder queue.", ["type", "delay"]
)
DEAD_LETTERS = Counter(
    "bcsync_dead_letters_total", "Events dead-lettered, by error code.", ["code"]
)
DEAD_LETTER_DEPTH = Gauge(
    "bcsync_dead_letter_depth", "Messages in the dead-letter queue (sampled)."
)
CONSUMERS = Gauge(
    "bcsync_consumers", "Consumers this process has registered, per queue.", ["queue"]
)
SKIPPED = Counter(
    "bcsync_events_skipped_total",
    "Events acked without work: no configuration, or the object type switched off.",
    ["type", "reason"],
)
SUPERSEDED = Counter(
    "bcsync_events_superseded_total",
    "Events acked without work because a newer change of the object is already in BC.",
    ["type"],
)
STATUS_EVENTS = Counter(
    "bcsync_status_events_total", "bc.sync.status events published, by new state.", ["state"]
)
HEALED = Counter(
    "bcsync_dead_letters_healed_total",
    "Dead letters replayed automatically because their cause looks fixed, by trigger.",
    ["trigger"],
)
PRUNED = Counter(
    "bcsync_retention_pruned_total", "Rows deleted by the retention job, by table.", ["table"]
)

BC_REQUESTS = Histogram(
    "bcsync_bc_request_seconds",
    "Business Central request latency by resource, method and HTTP status.",
    ["resource", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BC_THROTTLED = Counter("bcsync_bc_throttled_total", "429 answers from Business Central.")
BC_RETRIES = Counter(
    "bcsync_bc_retries_total", "In-process retries of Business Central requests.", ["reason"]
)
BC_TOKEN_REQUESTS = Counter(
    "bcsync_bc_token_requests_total", "Token requests sent to Entra ID, by result.", ["result"]
)
BC_LAST_SUCCESS = Gauge(
    "bcsync_bc_last_success_timestamp_seconds", "Unix time of the last successful BC call."
)

EXPENSES_PUBLISHED = Counter(
    "bcsync_expenses_published_total", "bc.expense.imported events published."
)
POLLER_LAG = Gauge(
    "bcsync_poller_lag_seconds",
    "Seconds since the last successful expense poll, per organization.",
    ["org"],
)
PAYMENT_EVENTS = Counter(
    "bcsync_payment_events_published_total",
    "bc.invoice.paid and bc.invoice.payment_updated events published, by type.",
    ["type"],
)
PAYMENTS_POLLER_LAG = Gauge(
    "bcsync_payments_poller_lag_seconds",
    "Seconds since the last successful payment poll, per organization.",
    ["org"],
)
NOTIFICATIONS_SENT = Counter(
    "bcsync_notifications_sent_total",
    "Notifications delivered, by channel (email, moment) and result.",
    ["channel", "result"],
)
CREDENTIALS_REJECTED = Counter(
    "bcsync_credentials_rejected_total", "Calls that failed because credentials were rejected."
)
