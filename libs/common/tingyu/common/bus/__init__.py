"""The NATS adapter every service uses, one module per concern:

- `connection`: the `Bus` (connect, publish with size checks, a lost connection that ends the process);
- `topology`: streams, buckets and object stores declared from `tingyu.common.subjects`;
- `stores`: `Store[M]`, a bucket read and written as its model;
- `consumers`: durable consumers declared as `ConsumerSpec`s, with retries and dead letters;
- `responders`: request/reply with one reply envelope;
- `objects`: chunked reads of stored objects.
"""

from tingyu.common.bus.connection import Bus
from tingyu.common.bus.consumers import Reject, Retry, consume, in_progress, reading
from tingyu.common.bus.objects import object_chunks
from tingyu.common.bus.responders import Reply, call, serve, serve_by_subject
from tingyu.common.bus.stores import Store

__all__ = [
    "Bus",
    "Reject",
    "Reply",
    "Retry",
    "Store",
    "call",
    "consume",
    "in_progress",
    "object_chunks",
    "reading",
    "serve",
    "serve_by_subject",
]
