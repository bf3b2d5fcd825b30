"""Registrations of one new name racing across registrar replicas, on the real MariaDB."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from rbr_registrar.committer import GroupCommitter
from rbr_registrar.domain import BucketRow, Registration, Verdict
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.engine import make_engine
from rbr_runtime.secrets import TokenVault
from rbr_testing.registry import database_url

pytestmark = pytest.mark.mariadb

vault = TokenVault.from_setting("race-secret")
NAME = "rustbucket-r4ce0000"


def registration(token: str) -> Registration:
    return Registration(
        name=NAME,
        ip_address="203.0.113.7",
        port=None,
        operating_system="linux",
        metrics={},
        s3=None,
        token_hash=vault.fingerprint(token),
        token_ciphertext=vault.encrypt(token),
    )


class LockstepRepository(BucketRepository):
    """A replica whose first look at the rows waits until the other replica looked too.

    Both then see no bucket of that name and both insert one: the unique name decides.
    """

    def __init__(self, engine: Engine, barrier: threading.Barrier) -> None:
        super().__init__(engine)
        self._barrier = barrier
        self.looks = 0

    def _lock_rows(self, connection: Connection, names: Sequence[str]) -> dict[str, BucketRow]:
        rows = super()._lock_rows(connection, names)
        self.looks += 1
        if self.looks == 1:
            self._barrier.wait(10)
        return rows


def race(mysql_engine: Engine, tokens: tuple[str, str]) -> list[Any]:
    barrier = threading.Barrier(2)
    engines = [make_engine(database_url(mysql_engine)) for _ in tokens]
    replicas = [LockstepRepository(engine, barrier) for engine in engines]
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(replica.register, [registration(token)])
                for replica, token in zip(replicas, tokens, strict=True)
            ]
            outcomes: list[Any] = []
            for future in futures:
                error = future.exception(30)
                outcomes.append(error if error is not None else future.result()[0].verdict)
    finally:
        for engine in engines:
            engine.dispose()
    # The loser's insert failed on the unique name; it looked again and decided again.
    assert sorted(replica.looks for replica in replicas) == [1, 2]
    return outcomes


def test_a_name_taken_by_a_racing_registration_with_another_token_is_a_conflict(
    mysql_engine: Engine,
) -> None:
    outcomes = race(mysql_engine, ("a" * 32, "b" * 32))
    assert sorted(map(str, outcomes)) == sorted([str(Verdict.CREATED), str(Verdict.CONFLICT)])


def test_the_same_bucket_racing_itself_is_created_once(mysql_engine: Engine) -> None:
    outcomes = race(mysql_engine, ("a" * 32, "a" * 32))
    assert sorted(map(str, outcomes)) == sorted([str(Verdict.CREATED), str(Verdict.UNCHANGED)])


class RefusingRepository(BucketRepository):
    """A repository whose database refuses every registration of one name (not a race)."""

    def __init__(self, engine: Engine, refused: str) -> None:
        super().__init__(engine)
        self._refused = refused
        self.attempts = 0

    def _register_once(self, registrations: Sequence[Registration]) -> list[Any]:
        self.attempts += 1
        if any(r.name == self._refused for r in registrations):
            raise IntegrityError("INSERT INTO buckets", {}, Exception("refused"))
        return super()._register_once(registrations)


def test_an_integrity_error_that_is_no_race_is_tried_again_once_not_as_an_outage(
    mysql_engine: Engine,
) -> None:
    repository = RefusingRepository(mysql_engine, NAME)
    with pytest.raises(IntegrityError):
        repository.register([registration("a" * 32)])
    assert repository.attempts == 2, "one more decision after a lost race, then it propagates"

    committer = GroupCommitter(repository, max_batch=10)
    others = [replace(registration("c" * 32), name=f"rustbucket-0ther00{i}") for i in range(2)]
    futures = [committer.submit(r) for r in (others[0], registration("a" * 32), others[1])]
    committer.stop()
    repository.attempts = 0
    committer.run()
    assert [f.result(5).verdict for f in (futures[0], futures[2])] == [Verdict.CREATED] * 2
    assert isinstance(futures[1].exception(5), IntegrityError)
    # The batch twice, then each alone: the others once, the refused one twice.
    assert repository.attempts == 2 + 1 + 2 + 1
