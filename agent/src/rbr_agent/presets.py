"""Where common honeypots and daemons write their logs, and how to tell they are alive.

A preset names the log directory, the file name patterns of the current file and its
rotated or compressed predecessors, the process names and the ports the honeypot listens on.
Each setting can be overridden on its own (RBR_AGENT_LOG_DIR, RBR_AGENT_LOG_PATTERNS, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """What the agent serves and watches for one kind of honeypot."""

    name: str
    log_dir: str
    patterns: tuple[str, ...]
    process_names: tuple[str, ...]
    ports: tuple[int, ...]
    description: str


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="rustbucket",
            log_dir="logs",
            # tracing-appender: daily rustbucket.log.YYYY-MM-DD, hourly ...YYYY-MM-DD-HH,
            # or never-rotated rustbucket.log; archives compressed by an operator's cron.
            patterns=("rustbucket.log", "rustbucket.log.*"),
            process_names=("rustbucket",),
            ports=(21, 22, 25, 80),
            description="jamesbinford/rustbucket: logs/rustbucket.log.YYYY-MM-DD[-HH] "
            "(relative to its working directory)",
        ),
        Preset(
            name="cowrie",
            log_dir="/home/cowrie/cowrie/var/log/cowrie",
            patterns=("cowrie.json", "cowrie.json.*"),
            process_names=("twistd", "cowrie"),
            ports=(2222, 2223),
            description="Cowrie's JSON log: cowrie.json, rotated to cowrie.json.YYYY-MM-DD",
        ),
        Preset(
            name="openssh",
            log_dir="/var/log",
            patterns=("auth.log", "auth.log.*"),
            process_names=("sshd",),
            ports=(22,),
            description="OpenSSH through syslog: /var/log/auth.log, auth.log.1, auth.log.2.gz",
        ),
        Preset(
            name="nginx",
            log_dir="/var/log/nginx",
            patterns=("access.log", "access.log.*"),
            process_names=("nginx",),
            ports=(80, 443),
            description="nginx access log: access.log, access.log.1, access.log.2.gz",
        ),
        Preset(
            name="apache",
            log_dir="/var/log/apache2",
            patterns=("access.log", "access.log.*"),
            process_names=("apache2", "httpd"),
            ports=(80, 443),
            description="Apache access log (Debian layout): access.log, access.log.1, .2.gz",
        ),
    )
}
DEFAULT_PRESET = "rustbucket"
