"""Pytest plugins shared by every test in the workspace (fixtures live in rbr_testing)."""

pytest_plugins = [
    "rbr_testing.anthropic_api",
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
