"""RabbitMQ: topology, the consumer loop with its retry ladder, the dead-letter header format,
and the publisher with confirms."""

from worker.messaging.consumer import Consumer
from worker.messaging.publisher import Publisher, make_message
from worker.messaging.topology import Topology, apply_topology

__all__ = ["Consumer", "Publisher", "Topology", "apply_topology", "make_message"]
