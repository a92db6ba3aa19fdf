"""Dead-letter queue operations (DESIGN §9): list, show, replay and purge, for the CLI and the API.

``model`` is one dead letter and the filters, ``scan`` the queue scan and its lock,
``operations`` what the CLI and the API call.

How the dead-letter queue is read without consuming it
-------------------------------------------------------
AMQP has no "peek". Every operation takes *all* messages with ``basic.get`` without ack on a
dedicated channel until the queue answers empty, settles (acks) the ones it is done with, and
hands the rest back with ``basic.nack(requeue=True)``. Broker facts that shape how (checked on
RabbitMQ 3.10.8 quorum queues; ``tests/integration/test_dlq.py`` holds us to them):

- A nack-requeued message goes to the **back** of a quorum queue. So an operation never stops
  early (not even for ``limit``): it holds the whole queue, and handing everything back in the
  original order rebuilds the queue as it was.
- One return command for more than 32 messages (a ``nack(multiple=True)`` over everything, or
  the client batching many pending returns into one) comes back **scrambled**: the quorum state
  machine folds over an Erlang map of message ids, sorted only up to 32 keys. And a chunk sent
  while the queue client is over its limit of pending commands (right after many acks) was
  seen coming back reversed. So messages go back one alone first (waiting until it is applied
  means the client caught up), then in chunks of at most :data:`RETURN_CHUNK`, each applied by
  the broker (the queue's ready count rose) before the next is sent.
- Closing a channel that holds messages puts them back at the front, but scrambled; that only
  happens here after a crash. Nothing is lost, the order may be.

Side effects a read still has: each message's ``x-delivery-count`` rises and ``redelivered`` is
set. The dead-letter queue has no delivery limit, so this is harmless; never give it one. A dead
letter that arrives while messages are being handed back lands ahead of them.

Held messages are invisible to everyone else, so two operations never settle the same message.
To also make them not *miss* each other's held messages, every operation first takes a lock: an
exclusive queue ``<prefix>.dead.lock`` (the broker releases it when the holder's connection
dies, so a killed replay never leaves it behind).

Replay publishes a copy to the exports queue with a publisher confirm and only then acks the
dead letter: a crash between the two leaves the message in both queues, never in neither.
"""

from worker.messaging.headers import iso
from worker.ops.dlq.model import (
    FILTER_FIELDS,
    GROUP_BY,
    DeadLetter,
    DlqBusy,
    DlqError,
    DlqUnavailable,
    FilterError,
    Filters,
    GroupBy,
    body_id,
    group_counts,
    jsonable,
    parse_time,
    redacted,
)
from worker.ops.dlq.operations import (
    LOCK_WAIT_S,
    DeadLetters,
    MoveResult,
    Moving,
    PurgeResult,
    ReplayResult,
    Settled,
    archive,
    default_archive_path,
    list_dead_letters,
    purge,
    replay,
    restore,
    show_dead_letter,
)

__all__ = [
    "FILTER_FIELDS",
    "GROUP_BY",
    "LOCK_WAIT_S",
    "DeadLetter",
    "DeadLetters",
    "DlqBusy",
    "DlqError",
    "DlqUnavailable",
    "FilterError",
    "Filters",
    "GroupBy",
    "MoveResult",
    "Moving",
    "PurgeResult",
    "ReplayResult",
    "Settled",
    "archive",
    "body_id",
    "default_archive_path",
    "group_counts",
    "iso",
    "jsonable",
    "list_dead_letters",
    "parse_time",
    "purge",
    "redacted",
    "replay",
    "restore",
    "show_dead_letter",
]
