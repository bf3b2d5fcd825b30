"""Reading every bucket's registration from `bucket.registered` without joining a group.

`rbr run-task extract_logs` runs beside the service; joining the service's consumer group
would take buckets away from it for a rebalance, so the task reads the compacted topic
directly, from the beginning to its end (the runtime's `read_registrations`).
"""

from __future__ import annotations

from rbr_runtime.kafka.directory import read_registrations

__all__ = ["read_registrations"]
