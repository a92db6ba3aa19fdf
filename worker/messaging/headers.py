"""Names of the AMQP headers bc-sync sets. Dead-letter tooling and ops rely on them."""

ATTEMPT = "x-bc-attempt"  # 1-based delivery attempt of this event through the ladder
ROUTING_KEY = "x-bc-routing-key"  # the original routing key (= event type)
FIRST_FAILURE = "x-bc-first-failure"  # ISO time of the first failure
LAST_FAILURE = "x-bc-last-failure"
ERROR_CODE = "x-bc-error-code"  # stable code from worker.errors.CATALOGUE
ERROR_MESSAGE = "x-bc-error-message"
ERROR_CLASS = "x-bc-error-class"  # invalid | permanent | attempts_exhausted | delivery_limit
ATTEMPTS = "x-bc-attempts"  # attempts used when dead-lettered
BC_STATUS = "x-bc-last-bc-status"
BC_CODE = "x-bc-last-bc-code"
ORG = "x-bc-org"
EVENT_ID = "x-bc-event-id"
EVENT_TYPE = "x-bc-event-type"
SUBJECT = "x-bc-subject"  # the Moment object, e.g. "invoice 1864"
HISTORY = "x-bc-history"  # list of {at, code, class, message, attempt}: every failure so far
REPLAY_ID = "x-bc-replay-id"
REPLAYED_AT = "x-bc-replayed-at"
# Self-healing (worker.ops.heal): what the failure needs in BC, and the healer's marks.
MISSING = "x-bc-missing"  # list of {kind, value[, dimension]}: records BC said are missing
HEALED = "x-bc-healed"  # why the healer replayed this message (kept through later failures)
HEALED_AT = "x-bc-healed-at"  # ISO time of that replay
HEAL_COUNT = "x-bc-heal-count"  # automatic replays so far

# Every header we own starts with this prefix; a replay strips them to reset the history.
PREFIX = "x-bc-"
