"""Leader leases of singleton loops."""

from __future__ import annotations

from tingyu.common.models.base import Message


class LeaseRecord(Message):
    """Bucket `ty_leases`, key = loop name: who holds the lease and until when."""

    holder: str
    expires_at: float
