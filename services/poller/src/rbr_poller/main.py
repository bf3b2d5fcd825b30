"""The poller process: bucket directory, poll loop, health and metrics on port 9101."""

from __future__ import annotations

import sys

from sqlalchemy import Engine

from rbr_poller.polling import PollConfig
from rbr_poller.recorder import Recorder
from rbr_poller.scheduler import PollLoop
from rbr_poller.settings import PollerSettings
from rbr_poller.store import PollerStateStore
from rbr_poller.unresponsive import polling_gap
from rbr_runtime.buckets import vault
from rbr_runtime.db.engine import make_engine
from rbr_runtime.dependencies import broker_dependency, database_dependency, watch_dependencies
from rbr_runtime.kafka import BucketDirectory, EventProducer
from rbr_runtime.service import Service, bootstrap

SOURCE = "/rbr/poller"
GROUP = "poller"


def state_store(engine: Engine, settings: PollerSettings) -> PollerStateStore:
    """Returns the poll state store, knowing how far apart this fleet's polls normally are."""
    return PollerStateStore(engine, polling_gap(settings.poll_interval, settings.bucket_timeout))


def poll_config(settings: PollerSettings) -> PollConfig:
    """Returns how this poller calls buckets."""
    return PollConfig(
        access=settings, vault=vault(settings), max_response_bytes=settings.max_response_bytes
    )


class Poller:
    """The wired parts of a poller replica, for tests that need to reach inside."""

    def __init__(self, settings: PollerSettings) -> None:
        self.settings = settings
        self.service = Service(settings)
        self.engine = make_engine(settings.database_url)
        self.store = state_store(self.engine, settings)
        self.producer = EventProducer(settings, source=SOURCE)
        self.recorder = Recorder(
            self.store, self.producer, settings.unresponsive_after, settings.upload_stale_after
        )
        self.directory = BucketDirectory(settings, GROUP, on_change=self._directory_changed)
        self.loop = PollLoop(
            settings, self.directory, self.store, self.recorder, poll_config(settings)
        )
        service = self.service
        service.add("bucket-directory", self.directory.run, self.directory.stop)
        service.add("poll-loop", self.loop.run, self.loop.stop)
        service.health.add_check("bucket directory", self.directory.readiness)
        watch_dependencies(service, database_dependency(settings), broker_dependency(settings))
        # Not ready while results cannot be published (the producer is renewed if broken).
        service.health.add_check("publishing", self.producer.readiness)
        service.on_shutdown(self.producer.flush)
        service.on_shutdown(self.engine.dispose)

    def _directory_changed(self) -> None:
        self.loop.wake()


def build_service(settings: PollerSettings) -> Service:
    """Wires a poller replica; nothing runs until `run()`."""
    return Poller(settings).service


def main() -> None:
    """Runs the poller until SIGTERM."""
    settings = bootstrap(PollerSettings, "poller")
    sys.exit(build_service(settings).run())
