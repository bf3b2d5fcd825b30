"""The agent's configuration: command-line options, each defaulting to an RBR_AGENT_* variable."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rbr_agent import __version__
from rbr_agent.presets import DEFAULT_PRESET, PRESETS, Preset

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent runs with (presets resolved)."""

    command: str
    state_dir: Path
    preset: Preset
    log_dir: Path
    patterns: tuple[str, ...]
    process_names: tuple[str, ...]
    honeypot_ports: tuple[int, ...]
    pid_file: Path | None
    listen: str
    port: int
    advertise_address: str | None
    advertise_port: int | None
    name: str | None
    registrar_url: str | None
    enrollment_key: str | None
    registrar_ca_file: str | None
    tls_mode: str
    tls_cert: Path | None
    tls_key: Path | None
    max_pull_bytes: int
    partial_line_after: float
    log_level: str


# (option, variable, default, help)
_OPTIONS: list[tuple[str, str, str | None, str]] = [
    ("--registrar-url", "RBR_AGENT_REGISTRAR_URL", None,
     "the registrar's base URL, e.g. https://registry.example.com (unset: do not register)"),
    ("--enrollment-key", "RBR_AGENT_ENROLLMENT_KEY", None,
     "enrollment key: the bucket is active at once (without one it waits for an operator)"),
    ("--enrollment-key-file", "RBR_AGENT_ENROLLMENT_KEY_FILE", None,
     "file holding the enrollment key (a secret mount), instead of --enrollment-key"),
    ("--registrar-ca-file", "RBR_AGENT_REGISTRAR_CA_FILE", None,
     "CA bundle the registrar's HTTPS certificate is verified with (default: the system's)"),
    ("--state-dir", "RBR_AGENT_STATE_DIR", "/var/lib/rbr-agent",
     "private directory (0700) for the identity, certificate and cursor ledger"),
    ("--preset", "RBR_AGENT_PRESET", DEFAULT_PRESET,
     f"what runs beside the agent: {', '.join(PRESETS)}"),
    ("--log-dir", "RBR_AGENT_LOG_DIR", None, "the honeypot's log directory (default: preset's)"),
    ("--log-patterns", "RBR_AGENT_LOG_PATTERNS", None,
     "comma-separated file name patterns of the logs (default: preset's)"),
    ("--process-names", "RBR_AGENT_PROCESS_NAMES", None,
     "comma-separated process names of the honeypot; empty: not checked (default: preset's)"),
    ("--pid-file", "RBR_AGENT_PID_FILE", None,
     "the honeypot's pid file, checked instead of process names"),
    ("--honeypot-ports", "RBR_AGENT_HONEYPOT_PORTS", None,
     "comma-separated ports the honeypot listens on; empty: not checked (default: preset's)"),
    ("--listen", "RBR_AGENT_LISTEN", "0.0.0.0", "address to serve HTTPS on"),  # noqa: S104
    ("--port", "RBR_AGENT_PORT", "8443", "port to serve HTTPS on"),
    ("--advertise-address", "RBR_AGENT_ADVERTISE_ADDRESS", None,
     "IP the registry calls the agent at (default: this host's on the route to the registrar)"),
    ("--advertise-port", "RBR_AGENT_ADVERTISE_PORT", None,
     "port the registry calls the agent at, when forwarded (default: --port)"),
    ("--name", "RBR_AGENT_NAME", None,
     "bucket name taken on the first start (default: <preset>-<host>-<random>)"),
    ("--tls-mode", "RBR_AGENT_TLS_MODE", "pinned",
     "pinned: own certificate, pinned at registration; ca: --tls-cert from the operator's CA"),
    ("--tls-cert", "RBR_AGENT_TLS_CERT", None, "certificate (PEM) to serve with"),
    ("--tls-key", "RBR_AGENT_TLS_KEY", None, "its private key (PEM)"),
    ("--max-pull-bytes", "RBR_AGENT_MAX_PULL_BYTES", str(512 * MIB),
     "most log bytes one pull sends; the rest goes with the next pulls"),
    ("--partial-line-after", "RBR_AGENT_PARTIAL_LINE_AFTER", "3600",
     "seconds a file must be idle before its unfinished last line is sent"),
    ("--log-level", "RBR_AGENT_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
]  # fmt: skip


def parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Returns the command-line parser, defaults taken from the environment."""
    environ = os.environ if environ is None else environ
    result = argparse.ArgumentParser(
        prog="rbr-agent",
        description="Serves a honeypot's log files and health to the Rustbucket Registry over "
        "HTTPS (/update_bucket, /extract_logs), under a persistent identity. Every option "
        "defaults to the environment variable named in its help.",
    )
    result.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "info", "presets"),
        help="run (default): register and serve; info: show the identity, pin and ledger; "
        "presets: list the presets",
    )
    result.add_argument("--version", action="version", version=f"rbr-agent {__version__}")
    for option, variable, default, text in _OPTIONS:
        result.add_argument(
            option, default=environ.get(variable, default), help=f"{text} [{variable}]"
        )
    return result


def _split(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _int(value: str | None, option: str, low: int, high: int) -> int | None:
    if value in (None, ""):
        return None
    assert value is not None
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise ConfigError(f"{option} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _ports(text: str | None, fallback: tuple[int, ...]) -> tuple[int, ...]:
    parts = _split(text)
    if parts is None:
        return fallback
    return tuple(_int(p, "--honeypot-ports", 1, 65535) or 0 for p in parts)


def _enrollment_key(args: argparse.Namespace) -> str | None:
    if args.enrollment_key_file:
        try:
            return Path(args.enrollment_key_file).read_text().strip() or None
        except OSError as error:
            raise ConfigError(f"--enrollment-key-file cannot be read: {error}") from error
    return args.enrollment_key or None


def load(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Returns the configuration from the command line and the environment.

    Raises:
        ConfigError: a setting is wrong.
        SystemExit: --help, --version, or options argparse refuses.
    """
    args = parser(environ).parse_args(argv)
    preset = PRESETS.get(args.preset)
    if preset is None:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, not {args.preset!r}")
    if args.tls_mode not in ("pinned", "ca"):
        raise ConfigError(f"--tls-mode must be pinned or ca, not {args.tls_mode!r}")
    if args.tls_mode == "ca" and not (args.tls_cert and args.tls_key):
        raise ConfigError("--tls-mode ca needs --tls-cert and --tls-key (from your CA)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    partial = args.partial_line_after
    try:
        partial_line_after = float(partial)
    except ValueError:
        raise ConfigError(f"--partial-line-after must be seconds, not {partial!r}") from None
    return AgentConfig(
        command=args.command,
        state_dir=Path(args.state_dir),
        preset=preset,
        log_dir=Path(args.log_dir or preset.log_dir),
        patterns=_split(args.log_patterns) or preset.patterns,
        process_names=_or(_split(args.process_names), preset.process_names),
        honeypot_ports=_ports(args.honeypot_ports, preset.ports),
        pid_file=Path(args.pid_file) if args.pid_file else None,
        listen=args.listen,
        port=_int(args.port, "--port", 0, 65535) or 0,
        advertise_address=args.advertise_address or None,
        advertise_port=_int(args.advertise_port, "--advertise-port", 1, 65535),
        name=args.name or None,
        registrar_url=args.registrar_url or None,
        enrollment_key=_enrollment_key(args),
        registrar_ca_file=args.registrar_ca_file or None,
        tls_mode=args.tls_mode,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        max_pull_bytes=_int(args.max_pull_bytes, "--max-pull-bytes", 4096, 1 << 40) or MIB,
        partial_line_after=partial_line_after,
        log_level=args.log_level.upper(),
    )


def _or(value: tuple[str, ...] | None, fallback: tuple[str, ...]) -> tuple[str, ...]:
    return fallback if value is None else value
