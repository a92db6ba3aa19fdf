"""Failure notifications (DESIGN §8): who needs to hear about what, once, in plain words.

- :class:`NotificationRecorder` (an observer of the consumer) stores failures that need a
  person and the later success of such an object.
- :class:`DigestService` (role ``notify``) groups them per organization and window and sends
  one mail (SMTP, or .eml files in the outbox) and one ``bc.integration.failed`` event per
  Moment user recipient.
- :func:`digest_status` tells what is pending and how the last digest went.
"""

from worker.notify.recorder import NotificationRecorder
from worker.notify.service import DigestService, digest_status
from worker.notify.store import NotificationRepository

__all__ = ["DigestService", "NotificationRecorder", "NotificationRepository", "digest_status"]
