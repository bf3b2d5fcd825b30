"""Pytest plugins shared by every test in the workspace (fixtures live in rbr_testing)."""

import os

# `rbr` loads a local stack's var/rbr.env when there is one; tests never read a developer's.
os.environ["RBR_ENV_FILE"] = ""

pytest_plugins = [
    "rbr_testing.anthropic_api",
    "rbr_testing.browser",
    "rbr_testing.broker",
    "rbr_testing.http_receiver",
    "rbr_testing.mariadb",
    "rbr_testing.registry",
    "rbr_testing.s3",
    "rbr_testing.simulator",
    "rbr_testing.smtp",
    "rbr_testing.tcp_proxy",
    "rbr_testing.report",
]
