"""Declaring the platform's streams, buckets and object stores (idempotent, safe from any replica)."""

from __future__ import annotations

from typing import Any

from nats.js import api as js_api
from nats.js import errors as js_errors

from tingyu.common import subjects
from tingyu.common.bus.connection import Bus

_RETENTION = {
    "workqueue": js_api.RetentionPolicy.WORK_QUEUE,
    "limits": js_api.RetentionPolicy.LIMITS,
    "interest": js_api.RetentionPolicy.INTEREST,
}


async def ensure_topology(bus: Bus) -> None:
    """Create or update every stream, bucket and object store."""
    for stream in subjects.ALL_STREAMS:
        await ensure_stream(bus, stream)
    for bucket in subjects.ALL_BUCKETS:
        await ensure_bucket(bus, bucket)
    for store in subjects.ALL_OBJECT_STORES:
        await ensure_object_store(bus, store)


async def ensure_stream(bus: Bus, spec: subjects.StreamSpec) -> None:
    config = js_api.StreamConfig(
        name=spec.name,
        subjects=spec.subjects,
        retention=_RETENTION[spec.retention],
        max_age=spec.max_age_s or None,
        max_bytes=bus.max_bytes.get(spec.name, spec.max_bytes),
        # A full stream refuses the write and never drops one, except where its spec says `old`.
        discard=js_api.DiscardPolicy.OLD if spec.discard == "old" else js_api.DiscardPolicy.NEW,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        max_msg_size=spec.max_msg_size,
        allow_direct=spec.allow_direct,
        duplicate_window=spec.duplicate_window_s,
        storage=js_api.StorageType.FILE,
        num_replicas=bus.replicas,
        description=spec.description,
    )
    await _add_or_update(bus, config)


async def ensure_bucket(bus: Bus, spec: subjects.BucketSpec[Any]) -> None:
    """A KV bucket (stream `KV_<name>`), with direct gets on: any replica answers a key read
    without the JetStream API round trip (about eight times faster)."""
    try:
        await bus.js.create_key_value(
            bucket=spec.name,
            history=spec.history,
            ttl=spec.ttl_s or None,
            max_bytes=bus.max_bytes.get(spec.name, spec.max_bytes),
            max_value_size=spec.max_value_bytes,
            replicas=bus.replicas,
            description=spec.description,
            direct=True,
        )
    except js_errors.APIError:  # exists already (or created concurrently): bring its limits up to date
        await _update_limits(
            bus,
            spec.stream,
            allow_direct=True,
            max_bytes=bus.max_bytes.get(spec.name, spec.max_bytes),
            max_msg_size=spec.max_value_bytes,
        )


async def ensure_object_store(bus: Bus, spec: subjects.ObjectStoreSpec) -> None:
    config = js_api.ObjectStoreConfig(
        bucket=spec.name,
        ttl=spec.ttl_s or None,
        max_bytes=bus.max_bytes.get(spec.name, spec.max_bytes),
        replicas=bus.replicas,
        description=spec.description,
    )
    try:
        await bus.js.create_object_store(bucket=spec.name, config=config)
    except js_errors.APIError:
        await _update_limits(bus, spec.stream, max_bytes=bus.max_bytes.get(spec.name, spec.max_bytes))


async def _update_limits(bus: Bus, stream: str, **limits: Any) -> None:
    info = await bus.js.stream_info(stream)
    if any(getattr(info.config, key) != value for key, value in limits.items()):
        await bus.js.update_stream(info.config.evolve(**limits))


async def _add_or_update(bus: Bus, config: js_api.StreamConfig) -> None:
    try:
        await bus.js.add_stream(config)
    except js_errors.APIError:  # exists with another config, or created concurrently
        await bus.js.update_stream(config)
