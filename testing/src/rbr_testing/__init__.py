"""Test fixtures shared by the whole workspace: real broker, real MariaDB, S3, simulator."""
