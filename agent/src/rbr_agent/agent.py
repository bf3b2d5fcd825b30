"""The agent put together: identity, TLS, ledger, server and registration."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from rbr_agent import tls
from rbr_agent.config import AgentConfig, ConfigError
from rbr_agent.files import ensure_private_dir
from rbr_agent.identity import Identity, load_or_create
from rbr_agent.ledger import LEDGER_FILE, Ledger
from rbr_agent.pulls import LogService, PullSettings
from rbr_agent.registration import Registrar, RegistrarSettings, payload, route_address
from rbr_agent.server import AgentHTTPServer, Endpoints
from rbr_agent.status import StatusReporter, WatchSettings, operating_system

log = logging.getLogger(__name__)


class Agent:
    """One agent: serves on `start()`, registers in the background, stops on `stop()`."""

    def __init__(self, config: AgentConfig) -> None:
        """Loads (or makes) the identity, certificate and ledger, and binds the server.

        Raises:
            StateError: a state file exists but is unusable.
            ConfigError: a setting is unusable (e.g. the certificate files).
            OSError: the port cannot be bound, the state directory cannot be written.
        """
        self.config = config
        ensure_private_dir(config.state_dir)
        self.identity: Identity = load_or_create(
            config.state_dir, wanted_name=config.name, preset=config.preset.name
        )
        self.address = self._advertised_address()
        cert, key = self._certificate()
        self.pin = tls.fingerprint(cert) if config.tls_mode == "pinned" else None
        self.ledger = Ledger.open(config.state_dir / LEDGER_FILE)
        self.logs = LogService(
            PullSettings(
                directory=config.log_dir,
                patterns=config.patterns,
                max_pull_bytes=config.max_pull_bytes,
                partial_line_after=config.partial_line_after,
            ),
            self.ledger,
        )
        self.status = StatusReporter(
            WatchSettings(
                name=self.identity.name,
                ip_address=self.address,
                log_dir=config.log_dir,
                patterns=config.patterns,
                process_names=config.process_names,
                ports=config.honeypot_ports,
                pid_file=config.pid_file,
            )
        )
        self.server = AgentHTTPServer(
            (config.listen, config.port),
            Endpoints(self.identity.token, self.status, self.logs),
            tls.server_context(cert, key),
        )
        self.registrar: Registrar | None = None
        self._thread: threading.Thread | None = None

    def _advertised_address(self) -> str:
        config = self.config
        if config.advertise_address:
            return config.advertise_address
        if config.registrar_url:
            routed = route_address(config.registrar_url)
            if routed:
                return routed
        # The registrar replaces an unspecified address with the one the request came from.
        return "0.0.0.0"  # noqa: S104 - not bound: sent for the registrar to fill in

    def _certificate(self) -> tuple[Path, Path]:
        config = self.config
        if config.tls_cert is not None and config.tls_key is not None:
            for path in (config.tls_cert, config.tls_key):
                if not path.is_file():
                    raise ConfigError(f"{path} does not exist")
            return config.tls_cert, config.tls_key
        names = [self.address, config.listen, "localhost"]
        cert = tls.ensure_self_signed(config.state_dir, self.identity.name, names)
        return cert, config.state_dir / tls.KEY_FILE

    @property
    def port(self) -> int:
        """Returns the port the agent serves on."""
        return self.server.port

    def start(self) -> None:
        """Serves on a thread of its own and starts registering."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="https", daemon=True)
        self._thread.start()
        log.info(
            "bucket %s serving %s on https://%s:%d (certificate sha256 %s)",
            self.identity.name,
            self.config.log_dir,
            self.config.listen,
            self.port,
            self.pin or "verified by CA",
        )
        self._register()

    def _register(self) -> None:
        config = self.config
        if config.registrar_url is None:
            log.warning("RBR_AGENT_REGISTRAR_URL is not set: not registering")
            return
        body = payload(
            name=self.identity.name,
            token=self.identity.token,
            ip_address=self.address,
            port=config.advertise_port or self.port,
            operating_system=operating_system(),
            pin=self.pin,
            enrollment_key=config.enrollment_key,
        )
        self.registrar = Registrar(
            RegistrarSettings(
                url=config.registrar_url,
                enrollment_key=config.enrollment_key,
                ca_file=config.registrar_ca_file,
            ),
            body,
        )
        self.registrar.start()

    def stop(self) -> None:
        """Stops serving (transfers in flight are cut: the registry asks for them again)."""
        if self.registrar is not None:
            self.registrar.stop()
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(10)
        self.server.server_close()
        log.info("stopped")
