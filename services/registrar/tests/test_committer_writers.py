"""Group commit with several writers: the same registry as one writer, on the real MariaDB.

Registrations of the same names (some with the bucket's token, some with another) are
submitted at once to a committer with four writers; each name ends up created exactly once,
every other registration is decided against that bucket, and the outbox holds one
announcement per write.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import Future

import pytest
from sqlalchemy import Engine, func, select

from rbr_registrar.committer import GroupCommitter
from rbr_registrar.domain import Decision, Registration, Verdict
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.secrets import TokenVault

pytestmark = pytest.mark.mariadb

vault = TokenVault.from_setting("writers-secret")
NAMES = [f"rustbucket-w{i:07d}" for i in range(40)]


def registration(name: str, token: str) -> Registration:
    return Registration(
        name=name,
        ip_address="203.0.113.7",
        port=None,
        operating_system="linux",
        metrics={},
        s3=None,
        token_hash=vault.fingerprint(token),
        token_ciphertext=vault.encrypt(token),
    )


def test_parallel_writers_create_each_bucket_once_and_decide_the_rest_against_it(
    mysql_engine: Engine,
) -> None:
    submitted = [
        (name, token)
        for name in NAMES
        for token in (f"{name}-token", f"{name}-token", f"{name}-other", f"{name}-token")
    ]
    random.Random(4).shuffle(submitted)
    committer = GroupCommitter(BucketRepository(mysql_engine), max_batch=8, writers=4)
    thread = threading.Thread(target=committer.run)
    thread.start()
    futures: list[tuple[str, str, Future[Decision]]] = [
        (name, token, committer.submit(registration(name, token))) for name, token in submitted
    ]
    decisions = [(name, token, future.result(60)) for name, token, future in futures]
    committer.stop()
    thread.join(60)
    assert not thread.is_alive()

    created = {name: token for name, token, d in decisions if d.verdict is Verdict.CREATED}
    assert sorted(created) == NAMES
    for name, token, decision in decisions:
        if decision.verdict is Verdict.CREATED:
            continue
        expected = Verdict.CONFLICT if token != created[name] else Verdict.UNCHANGED
        assert decision.verdict is expected, (name, token)
    with mysql_engine.connect() as connection:
        stored = dict(connection.execute(select(buckets.c.name, buckets.c.token_hash)).all())
        announced = connection.execute(select(func.count()).select_from(outbox)).scalar_one()
    assert stored == {name: vault.fingerprint(token) for name, token in created.items()}
    writes = Counter(d.writes for _, _, d in decisions)[True]
    assert announced == writes == len(NAMES)


def test_stopping_commits_what_was_queued_before(mysql_engine: Engine) -> None:
    committer = GroupCommitter(BucketRepository(mysql_engine), writers=3)
    futures = [committer.submit(registration(name, f"{name}-token")) for name in NAMES]
    committer.stop()
    thread = threading.Thread(target=committer.run)
    thread.start()
    thread.join(60)
    assert [future.result(0).verdict for future in futures] == [Verdict.CREATED] * len(NAMES)
