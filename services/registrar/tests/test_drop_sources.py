"""Drop sources and delivery modes: linking rules, the operator API and CLI, bad input.

A drop folder is reported on `drop.discovered` (as the log-extractor does) to a running
registrar (real broker, real MariaDB); operators then list, adopt and turn folders into
buckets, and set a bucket's delivery mode and S3 source. Every refusal is a clear 4xx and
changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_registrar.domain import BucketRow, mode_after_link
from rbr_registrar.sources import Link, LinkReason, link_for
from rbr_schemas import DROP_DISCOVERED, DropFolderSeen, InstanceStart, utcnow
from rbr_testing.registry import TEST_OPERATOR_KEY, RegistrarFactory, RunningRegistrar
from rbr_testing.rustbucket_client import new_identity, post_like_rustbucket
from rbr_testing.waiting import wait_for

LOCATION = "s3://honeypot-logs/rustbuckets/"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def bucket_row(name: str, **changes: Any) -> BucketRow:
    values: dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        "name": name,
        "state": "pending",
        "ip_address": "203.0.113.7",
        "port": None,
        "operating_system": "linux (x86_64)",
        "cpu_usage": None,
        "memory_usage": None,
        "disk_space": None,
        "uptime": None,
        "connections": None,
        "s3_bucket_name": None,
        "s3_region": None,
        "s3_prefix": None,
        "token_hash": "h",
        "token_ciphertext": "c",
        "version": 1,
        "registered_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return BucketRow(**values)


def seen(folder: str, *starts: tuple[str, str | None]) -> DropFolderSeen:
    return DropFolderSeen(
        location=LOCATION,
        folder=folder,
        objects=1,
        size_bytes=100,
        newest_upload_at=NOW,
        starts=[InstanceStart(instance_name=i, registered_name=r) for i, r in starts],
        seen_at=NOW,
    )


# -- the rules, without a database --------------------------------------------------------------


def test_a_folder_is_linked_by_name_then_restart_then_identity_and_forged_starts_are_ignored() -> (
    None
):
    registered = {name: bucket_row(name) for name in ("rb-old", "rb-new", "rb-victim", "inst-0")}
    linked_folders = {"inst-1": registered["rb-old"].id}
    ids = {name: row.id for name, row in registered.items()}

    def decide(report: DropFolderSeen) -> Link | None:
        return link_for(report, ids.get, linked_folders.get)

    assert decide(seen("inst-0")) == Link(registered["inst-0"].id, LinkReason.NAME)
    own = seen("inst-2", ("inst-2", "rb-new"))
    assert decide(own) == Link(registered["rb-new"].id, LinkReason.IDENTITY)
    # After a restart the new folder holds the previous instance's start too: the bucket the
    # earlier instance fed wins over the fresh registration.
    restarted = seen("inst-2", ("inst-1", "rb-old"), ("inst-2", "rb-new"))
    assert decide(restarted) == Link(registered["rb-old"].id, LinkReason.RESTART)
    # A start naming neither this folder nor a linked one (lines an attacker wrote) is not
    # believed, whatever bucket it names.
    assert decide(seen("inst-3", ("inst-9", "rb-victim"))) is None
    assert decide(seen("inst-3", ("inst-3", None))) is None
    assert decide(seen("inst-3", ("inst-3", "rb-unknown"))) is None


def test_linking_makes_a_never_polled_pull_bucket_s3_drop_and_nothing_else() -> None:
    fresh = mode_after_link(bucket_row("rb-1"), NOW)
    assert fresh.row is not None
    assert (fresh.verdict.value, fresh.row.delivery_mode, fresh.row.version) == (
        "updated",
        "s3-drop",
        2,
    )
    for kept in (
        bucket_row("rb-2", last_seen=NOW),  # answers polls: stays pull, logs from the folder
        bucket_row("rb-3", delivery_mode="agent"),
        bucket_row("rb-4", delivery_mode_pinned=True),
        bucket_row("rb-5", delivery_mode="s3-drop"),
    ):
        assert mode_after_link(kept, NOW).verdict.value == "unchanged"


# -- the registrar ------------------------------------------------------------------------------


def register(registrar: RunningRegistrar, name: str) -> None:
    with registrar.client() as client:
        answer = client.post(
            "/register_bucket/",
            json={
                "name": name,
                "ip_address": "127.0.0.1",
                "operating_system": "linux (x86_64)",
                "token": uuid.uuid4().hex,
            },
        )
    assert answer.status_code == 200, answer.text


def report(registrar: RunningRegistrar, *reports: DropFolderSeen) -> None:
    for item in reports:
        registrar.registrar.producer.send(DROP_DISCOVERED, item.uri, item, subject=item.uri)


def get(client: httpx.Client, path: str) -> Any:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


def source_of(client: httpx.Client, folder: str) -> dict[str, Any]:
    sources = get(client, "/api/v1/sources?limit=1000")["sources"]
    return next(s for s in sources if s["folder"] == folder)


def feeds(client: httpx.Client, folder: str) -> str | None:
    """Returns the bucket a folder feeds (None: unclaimed or not reported yet)."""
    sources = get(client, "/api/v1/sources?limit=1000")["sources"]
    return next((s["bucket"] for s in sources if s["folder"] == folder), None)


def test_reports_link_folders_and_operators_adopt_and_create(
    registrar_factory: RegistrarFactory,
) -> None:
    registrar = registrar_factory()
    register(registrar, "rb-known")
    register(registrar, "rb-other")
    report(
        registrar,
        seen("inst-a", ("inst-a", "rb-known")),
        seen("inst-b", ("inst-z", "rb-known")),  # a forged start: stays unclaimed
        seen("rb-c-folder"),
    )
    with registrar.operator() as operator:
        wait_for(
            lambda: get(operator, "/api/v1/sources")["total"] == 3,
            message="three sources recorded",
        )
        linked = source_of(operator, "inst-a")
        assert (linked["bucket"], linked["linked_by"]) == ("rb-known", "identity")
        assert linked["uri"] == f"{LOCATION}inst-a/"
        assert get(operator, "/api/v1/buckets/rb-known")["delivery_mode"] == "s3-drop"
        unclaimed = get(operator, "/api/v1/sources?unclaimed=true")["sources"]
        assert sorted(s["folder"] for s in unclaimed) == ["inst-b", "rb-c-folder"]

        # Adopt: bad input, nothing changed.
        uri_b = f"{LOCATION}inst-b/"
        refusals = [
            ({"source": "http://x/inst-b/", "bucket": "rb-other"}, 422, "s3://BUCKET/PREFIX"),
            ({"source": uri_b, "bucket": "no such bucket!"}, 422, "bucket"),
            ({"source": uri_b, "bucket": "rb-missing"}, 404, "no bucket named rb-missing"),
            ({"source": f"{LOCATION}nowhere/", "bucket": "rb-other"}, 404, "no drop source"),
            ({"source": f"{LOCATION}inst-a/", "bucket": "rb-other"}, 409, "feeds bucket rb-known"),
        ]
        for body, status, message in refusals:
            answer = operator.post("/api/v1/sources/adopt", json=body)
            assert answer.status_code == status, (body, answer.text)
            assert message in answer.text
        assert source_of(operator, "inst-b")["bucket"] is None
        assert source_of(operator, "inst-a")["bucket"] == "rb-known"

        adopted = operator.post(
            "/api/v1/sources/adopt", json={"source": uri_b, "bucket": "rb-other"}
        )
        assert adopted.status_code == 200, adopted.text
        assert (adopted.json()["bucket"], adopted.json()["linked_by"]) == ("rb-other", "operator")
        moved = operator.post(
            "/api/v1/sources/adopt", json={"source": uri_b, "bucket": "rb-known", "move": True}
        )
        assert moved.json()["bucket"] == "rb-known"

        # A new bucket of a folder: bad input, nothing changed; then made once.
        uri_c = f"{LOCATION}rb-c-folder/"
        for body, status in (
            ({"source": uri_c, "name": "bad name"}, 422),
            ({"source": uri_c, "ip_address": "not-an-ip"}, 422),
            ({"source": uri_c, "name": "rb-other"}, 409),
            ({"source": uri_b}, 409),
        ):
            answer = operator.post("/api/v1/sources/new-bucket", json=body)
            assert answer.status_code == status, (body, answer.text)
        assert get(operator, "/api/v1/buckets")["total"] == 2
        made = operator.post("/api/v1/sources/new-bucket", json={"source": uri_c})
        assert made.status_code == 200, made.text
        bucket = get(operator, "/api/v1/buckets/rb-c-folder")
        assert (bucket["state"], bucket["delivery_mode"], bucket["delivery_mode_pinned"]) == (
            "active",
            "s3-drop",
            True,
        )
        assert (
            operator.post("/api/v1/sources/new-bucket", json={"source": uri_c}).status_code == 409
        )

        # Removing a bucket leaves its folders unclaimed.
        assert operator.delete("/api/v1/buckets/rb-c-folder").status_code == 200
        assert source_of(operator, "rb-c-folder")["bucket"] is None

    with registrar.client() as anonymous:
        assert anonymous.get("/api/v1/sources").status_code == 401
        refused = anonymous.post(
            "/api/v1/sources/adopt", json={"source": uri_c, "bucket": "rb-other"}
        )
        assert refused.status_code == 401


def test_operators_set_the_delivery_mode_and_s3_source(registrar_factory: RegistrarFactory) -> None:
    registrar = registrar_factory()
    register(registrar, "rb-mode")
    with registrar.operator() as operator:
        before = get(operator, "/api/v1/buckets/rb-mode")
        assert (before["delivery_mode"], before["delivery_mode_pinned"]) == ("pull", False)
        for path, body, status in (
            ("/api/v1/buckets/rb-mode/delivery-mode", {"mode": "ftp"}, 422),
            ("/api/v1/buckets/rb-mode/delivery-mode", {}, 422),
            ("/api/v1/buckets/rb-missing/delivery-mode", {"mode": "agent"}, 404),
            ("/api/v1/buckets/rb-mode/s3-source", {"bucket_name": "Bad_Bucket"}, 422),
            ("/api/v1/buckets/rb-mode/s3-source", {"bucket_name": "ok-bucket", "region": "x"}, 422),
            ("/api/v1/buckets/rb-missing/s3-source", {"bucket_name": "ok-bucket"}, 404),
        ):
            answer = operator.put(path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
        assert get(operator, "/api/v1/buckets/rb-mode") == before

        changed = operator.put("/api/v1/buckets/rb-mode/delivery-mode", json={"mode": "s3-drop"})
        assert changed.json()["status"] == "updated"
        bucket = get(operator, "/api/v1/buckets/rb-mode")
        assert (bucket["delivery_mode"], bucket["delivery_mode_pinned"]) == ("s3-drop", True)
        source = {"bucket_name": "honeypot-logs", "region": "eu-west-1", "prefix": "hp/"}
        assert operator.put("/api/v1/buckets/rb-mode/s3-source", json=source).status_code == 200
        assert get(operator, "/api/v1/buckets/rb-mode")["s3"] == source
        assert operator.delete("/api/v1/buckets/rb-mode/s3-source").status_code == 200
        assert get(operator, "/api/v1/buckets/rb-mode")["s3"] is None


def test_operator_manages_sources_and_modes_from_the_command_line(
    registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    registrar = registrar_factory()
    register(registrar, "rb-cli")
    report(registrar, seen("inst-cli-1"), seen("inst-cli-2"))
    runner = CliRunner()
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)
    wait_for(
        lambda: "inst-cli-2" in runner.invoke(app, ["sources", "list", "--unclaimed"]).output,
        message="the folders listed",
    )
    listed = runner.invoke(app, ["sources", "list", "--unclaimed"])
    assert f"{LOCATION}inst-cli-1/" in listed.output
    assert "(unclaimed)" in listed.output

    bad = runner.invoke(app, ["sources", "adopt", f"{LOCATION}inst-cli-1/", "rb-missing"])
    assert bad.exit_code == 1
    assert "404: no bucket named rb-missing" in bad.output
    adopted = runner.invoke(app, ["sources", "adopt", f"{LOCATION}inst-cli-1/", "rb-cli"])
    assert adopted.exit_code == 0, adopted.output
    assert f"{LOCATION}inst-cli-1/: feeds rb-cli" in adopted.output
    made = runner.invoke(
        app, ["sources", "new-bucket", f"{LOCATION}inst-cli-2/", "--name", "rb-made"]
    )
    assert made.exit_code == 0, made.output
    assert "rb-made: created (s3-drop)" in made.output

    wrong_mode = runner.invoke(app, ["buckets", "set-mode", "rb-cli", "ftp"])
    assert wrong_mode.exit_code == 2
    assert "pull, agent, s3-drop" in wrong_mode.output
    assert runner.invoke(app, ["buckets", "set-mode", "rb-missing", "agent"]).exit_code == 1
    shown = runner.invoke(app, ["buckets", "list"])
    assert "rb-cli" in shown.output
    assert "s3-drop" in shown.output  # adopted while it never answered a poll
    moded = runner.invoke(app, ["buckets", "set-mode", "rb-cli", "agent"])
    assert "rb-cli: updated" in moded.output
    no_uri = runner.invoke(app, ["buckets", "set-source", "rb-cli", "honeypot-logs"])
    assert no_uri.exit_code == 2
    sourced = runner.invoke(app, ["buckets", "set-source", "rb-cli", "s3://honeypot-logs/hp/"])
    assert sourced.exit_code == 0, sourced.output
    with registrar.operator() as operator:
        bucket = get(operator, "/api/v1/buckets/rb-cli")
    assert bucket["delivery_mode"] == "agent"
    assert bucket["s3"] == {"bucket_name": "honeypot-logs", "region": "us-east-1", "prefix": "hp/"}


# -- with a honeypot restarting under new names (merges, aliases, replacements) -----------------


def start_like_rustbucket(registrar: RunningRegistrar) -> str:
    """One start of the real honeypot: a fresh name and token, registered with 0.0.0.0."""
    name, token = new_identity()
    status, answer = post_like_rustbucket(f"{registrar.url}/api/v1/register_bucket", name, token)
    assert status == 200, answer
    return name


def uploaded(folder: str, registered: str, at: datetime) -> DropFolderSeen:
    return seen(folder, (folder, registered)).model_copy(update={"newest_upload_at": at})


def test_uploads_keep_a_bucket_alive_and_merged_names_and_folders_follow_the_merge(
    registrar_factory: RegistrarFactory,
) -> None:
    registrar = registrar_factory()
    first = start_like_rustbucket(registrar)
    with registrar.operator() as operator:
        assert operator.post(f"/api/v1/buckets/{first}/approve").status_code == 200

        def recorded(folder: str, at: datetime) -> bool:
            sources = get(operator, "/api/v1/sources?limit=1000")["sources"]
            return any(
                s["folder"] == folder
                and s["newest_upload_at"] is not None
                and datetime.fromisoformat(s["newest_upload_at"]) == at
                for s in sources
            )

        # Its folder last got an upload two hours ago: silent, a restart replaces it.
        long_ago = utcnow().replace(microsecond=0) - timedelta(hours=2)
        report(registrar, uploaded("inst-1", first, long_ago))
        wait_for(lambda: recorded("inst-1", long_ago), message="the old upload recorded")
        assert source_of(operator, "inst-1")["bucket"] == first
        assert get(operator, f"/api/v1/buckets/{first}")["delivery_mode"] == "s3-drop"
        second = start_like_rustbucket(registrar)
        assert get(operator, f"/api/v1/buckets/{second}")["replaces"] == first

        # An upload a minute ago: the honeypot is alive, a new registration replaces nothing.
        recent = utcnow().replace(microsecond=0) - timedelta(minutes=1)
        report(registrar, uploaded("inst-1", first, recent))
        wait_for(lambda: recorded("inst-1", recent), message="the new upload recorded")
        third = start_like_rustbucket(registrar)
        assert get(operator, f"/api/v1/buckets/{third}")["replaces"] is None

        # A folder linked to a registration follows it when it is merged into the bucket.
        report(registrar, uploaded("inst-3", third, recent))
        wait_for(lambda: feeds(operator, "inst-3") == third, message="linked")
        merged = operator.post(f"/api/v1/buckets/{third}/merge", json={"into": first})
        assert merged.status_code == 200, merged.text
        assert source_of(operator, "inst-3")["bucket"] == first

        # A folder whose files name a merged registration feeds the bucket it was merged into.
        assert operator.post(f"/api/v1/buckets/{second}/merge", json={"into": first}).is_success
        report(registrar, uploaded("inst-2", second, recent))
        wait_for(lambda: feeds(operator, "inst-2") == first, message="by alias")
        assert source_of(operator, "inst-2")["linked_by"] == "identity"
        assert get(operator, "/api/v1/buckets")["total"] == 1

        # An operator naming a merged registration is told which bucket it is now.
        refused = operator.post(
            "/api/v1/sources/adopt", json={"source": f"{LOCATION}inst-2/", "bucket": second}
        )
        assert refused.status_code == 404
        assert f"merged into bucket {first}" in refused.json()["detail"]
        assert source_of(operator, "inst-2")["bucket"] == first


def test_the_bucket_agent_registers_an_agent_bucket_and_an_operator_s_mode_stays(
    registrar_factory: RegistrarFactory,
) -> None:
    registrar = registrar_factory()
    body = {
        "name": "rb-agent",
        "ip_address": "127.0.0.1",
        "port": 8443,
        "operating_system": "linux (x86_64)",
        "token": uuid.uuid4().hex,
        "delivery_mode": "agent",
        "tls_cert_sha256": "ab" * 32,
    }
    with registrar.client() as client, registrar.operator() as operator:
        bad = client.post("/register_bucket/", json={**body, "delivery_mode": "carrier-pigeon"})
        assert bad.status_code == 422
        assert "delivery_mode" in bad.text
        assert operator.get("/api/v1/buckets/rb-agent").status_code == 404
        assert client.post("/register_bucket/", json=body).status_code == 200
        assert get(operator, "/api/v1/buckets/rb-agent")["delivery_mode"] == "agent"
        pinned = operator.put("/api/v1/buckets/rb-agent/delivery-mode", json={"mode": "pull"})
        assert pinned.status_code == 200
        again = client.post("/register_bucket/", json={**body, "operating_system": "linux 6"})
        assert again.status_code == 200
        bucket = get(operator, "/api/v1/buckets/rb-agent")
    assert (bucket["operating_system"], bucket["delivery_mode"]) == ("linux 6", "pull")
