"""A simulated fleet of rustbucket honeypots, for tests, demos and benchmarks.

The log generator is light and importable on its own (parser tests use it without servers)::

    from rbr_simulator import LogGenerator, LogMix

The fleet (aiohttp, boto3, httpx) is imported on first use of `Fleet` and its companions::

    from rbr_simulator import Fleet
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import EventType, HostileKind, LogFormat, LogMix, LogRecord

if TYPE_CHECKING:
    from rbr_simulator.bucket import BucketInfo, BucketStats, Mode, RequestRecord, S3Target
    from rbr_simulator.fleet import Fleet
    from rbr_simulator.logstore import BulkLog
    from rbr_simulator.net import BindMode
    from rbr_simulator.registration import RegistrationResult
    from rbr_simulator.s3 import S3Settings

# Names served lazily, with the module that defines each: importing them pulls in the servers.
_LAZY = {
    "BindMode": "rbr_simulator.net",
    "BucketInfo": "rbr_simulator.bucket",
    "BucketStats": "rbr_simulator.bucket",
    "BulkLog": "rbr_simulator.logstore",
    "Fleet": "rbr_simulator.fleet",
    "Mode": "rbr_simulator.bucket",
    "RegistrationResult": "rbr_simulator.registration",
    "RequestRecord": "rbr_simulator.bucket",
    "S3Settings": "rbr_simulator.s3",
    "S3Target": "rbr_simulator.bucket",
}

__all__ = [
    "BindMode",
    "BucketInfo",
    "BucketStats",
    "BulkLog",
    "EventType",
    "Fleet",
    "HostileKind",
    "LogFormat",
    "LogGenerator",
    "LogMix",
    "LogRecord",
    "Mode",
    "RegistrationResult",
    "RequestRecord",
    "S3Settings",
    "S3Target",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rbr_simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
