"""Pytest plugins shared by every test in the workspace (fixtures live in rbr_testing)."""

pytest_plugins = [
    "rbr_testing.broker",
    "rbr_testing.mariadb",
    "rbr_testing.report",
    "rbr_testing.s3",
    "rbr_testing.simulator",
    "rbr_testing.tcp_proxy",
]
