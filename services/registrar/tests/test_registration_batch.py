"""A registration batch's reads, through the database: hosts' lineages, merged names, NULLs.

The batch's transaction reads each host's count and lineage columns in one statement and
locks aliases before their buckets; these check what that decides, on MariaDB and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from rbr_registrar.domain import Registration, Verdict
from rbr_registrar.lineage import CROWDED_HOST
from rbr_registrar.merges import BucketMerges
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import buckets
from rbr_runtime.secrets import TokenVault

vault = TokenVault.from_setting("batch-secret")


@pytest.fixture(params=["mariadb", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty registry on MariaDB, then on SQLite."""
    if request.param == "mariadb":
        request.applymarker(pytest.mark.mariadb)
        yield request.getfixturevalue("mysql_engine")
        return
    url = f"sqlite:///{tmp_path}/rbr.db"
    upgrade(url)
    sqlite = make_engine(url)
    yield sqlite
    sqlite.dispose()


def registration(name: str, ip_address: str, token: str = "") -> Registration:
    secret = token or f"{name}-token"
    return Registration(
        name=name,
        ip_address=ip_address,
        port=None,
        operating_system="linux (x86_64)",
        metrics={},
        s3=None,
        token_hash=vault.fingerprint(secret),
        token_ciphertext=vault.encrypt(secret),
    )


def replaces(engine: Engine, name: str) -> str | None:
    with engine.connect() as connection:
        query = select(buckets.c.replaces_id).where(buckets.c.name == name)
        value = connection.execute(query).scalar_one()
    return None if value is None else str(value)


def test_a_restart_replaces_the_silent_bucket_of_its_host(engine: Engine) -> None:
    repository = BucketRepository(engine)
    (first,) = repository.register([registration("rustbucket-first", "203.0.113.7")])
    assert first.row is not None
    repository.register(
        [
            registration("rustbucket-second", "203.0.113.7"),
            registration("rustbucket-third", "203.0.113.7"),
            registration("rustbucket-elsewhere", "203.0.113.8"),
        ]
    )
    # The third sees the second of its own batch: one lineage, still the first bucket's.
    assert replaces(engine, "rustbucket-second") == first.row.id
    assert replaces(engine, "rustbucket-third") == first.row.id
    assert replaces(engine, "rustbucket-elsewhere") is None


def test_a_crowded_host_marks_no_replacement_even_within_a_batch(engine: Engine) -> None:
    repository = BucketRepository(engine)
    host = "203.0.113.9"
    names = [f"rustbucket-c{n:03d}" for n in range(CROWDED_HOST + 1)]
    repository.register([registration(name, host) for name in names])
    repository.register(
        [registration("rustbucket-late1", host), registration("rustbucket-late2", host)]
    )
    assert replaces(engine, "rustbucket-late1") is None
    assert replaces(engine, "rustbucket-late2") is None


def test_a_merged_name_designates_its_bucket(engine: Engine) -> None:
    repository = BucketRepository(engine)
    repository.register([registration("rustbucket-into", "203.0.113.11")])
    repository.register([registration("rustbucket-merged", "203.0.113.11")])
    BucketMerges(repository).merge("rustbucket-merged", "rustbucket-into")
    same, other = repository.register(
        [
            registration("rustbucket-merged", "203.0.113.11"),
            registration("rustbucket-merged", "203.0.113.11", token="another-token-entirely"),
        ]
    )
    assert same.verdict is Verdict.UNCHANGED  # its token and address: nothing new
    assert same.row is not None
    assert same.row.name == "rustbucket-into"
    assert other.verdict is Verdict.CONFLICT


def test_columns_left_out_of_the_insert_are_stored_null(engine: Engine) -> None:
    repository = BucketRepository(engine)
    repository.register([registration("rustbucket-nulls", "203.0.113.12")])
    with engine.connect() as connection:
        row = connection.execute(select(buckets).where(buckets.c.name == "rustbucket-nulls")).one()
    assert row.port is None
    assert row.s3_bucket_name is None
    assert row.last_seen is None
    assert row.tls_cert_sha256 is None
    assert row.delivery_mode == "pull"
    assert row.delivery_mode_pinned is False
