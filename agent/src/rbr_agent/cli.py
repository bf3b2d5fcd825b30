"""`rbr-agent`: run the agent, show its identity, list the presets."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from rbr_agent import tls
from rbr_agent.config import AgentConfig, ConfigError, load
from rbr_agent.files import StateError, read_private_json
from rbr_agent.identity import STATE_FILE
from rbr_agent.ledger import LEDGER_FILE
from rbr_agent.presets import PRESETS

log = logging.getLogger("rbr_agent")


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit code (2 for a configuration error)."""
    try:
        config = load(argv)
    except ConfigError as error:
        print(f"rbr-agent: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if config.command == "presets":
        return _presets()
    if config.command == "info":
        return _info(config)
    return _run(config)


def _presets() -> int:
    for preset in PRESETS.values():
        ports = ",".join(str(p) for p in preset.ports)
        print(
            f"{preset.name:<11} {preset.log_dir}  {','.join(preset.patterns)}  "
            f"process {','.join(preset.process_names)}  ports {ports}\n"
            f"{'':<11} {preset.description}"
        )
    return 0


def _info(config: AgentConfig) -> int:
    try:
        state = read_private_json(config.state_dir / STATE_FILE)
        ledger = read_private_json(config.state_dir / LEDGER_FILE)
    except StateError as error:
        print(f"rbr-agent: {error}", file=sys.stderr)
        return 1
    cert = config.tls_cert or config.state_dir / tls.CERT_FILE
    lines = [
        f"state directory: {config.state_dir}",
        f"name: {state['name'] if state else '(none yet: made at the first start)'}",
        f"certificate: {cert}",
        f"certificate sha256: {tls.fingerprint(cert) if cert.is_file() else '(none yet)'}",
        f"log directory: {config.log_dir} ({', '.join(config.patterns)})",
    ]
    if ledger:
        lines.append(
            f"ledger: {len(ledger.get('files', {}))} file(s) known, last confirmed cursor "
            f"{ledger.get('epoch')}-{ledger.get('acked_pull')}, "
            f"{len(ledger.get('issued', []))} pull(s) awaiting confirmation"
        )
    print("\n".join(lines))
    return 0


def _run(config: AgentConfig) -> int:
    from rbr_agent.agent import Agent  # noqa: PLC0415 - `--help` and `presets` stay light

    try:
        agent = Agent(config)
    except (StateError, ConfigError, ValueError, OSError) as error:
        log.error("cannot start: %s", error)
        return 1
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %d: stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.start()
    while not stopping.wait(1.0):
        pass
    agent.stop()
    return 0
