"""Every table of the registry's one database, grouped by the service that owns it.

Alembic migrations (`rbr_runtime/db/migrations`) create these; a test checks that the
migrated schema and these definitions agree. Each table is written by one service only.
On MySQL every table is utf8mb4 with the binary collation: names and values compare byte for
byte, as on SQLite (rustbucket names are case-sensitive: `rustbucket-aB` is not `rustbucket-Ab`).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from rbr_runtime.db.types import LongBlob, LongText, UtcDateTime, UtcNow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""BIGINT on MySQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements."""

# --- runtime: scheduled tasks that must run once across replicas -----------------------------

task_runs = Table(
    "task_runs",
    metadata,
    Column("task", String(64), nullable=False),
    Column("slot", String(64), nullable=False, comment="e.g. the day, for a daily task"),
    Column("claimed_by", String(255), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("detail", Text(), nullable=True),
    PrimaryKeyConstraint("task", "slot"),
)

# --- runtime: the transactional outbox (rbr_runtime.outbox) ----------------------------------

outbox = Table(
    "outbox",
    metadata,
    # Messages written in the transaction of the change they announce, published afterwards
    # by the relay of the service that wrote them. The one table every service writes to:
    # each service only its own rows (its name in `service`).
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False, comment="whose outbox: registrar, analyst"),
    Column("topic", String(255), nullable=False),
    Column("message_key", String(255), nullable=False),
    Column("value", LongBlob, nullable=True, comment="NULL is a tombstone"),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(None, "service", "id"),
)

# --- registrar ---------------------------------------------------------------------------------

buckets = Table(
    "buckets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("state", String(16), nullable=False, index=True),
    Column("ip_address", String(45), nullable=False),
    Column("port", Integer(), nullable=True),
    Column("operating_system", String(255), nullable=True),
    Column("cpu_usage", String(255), nullable=True),
    Column("memory_usage", String(255), nullable=True),
    Column("disk_space", String(255), nullable=True),
    Column("uptime", String(255), nullable=True),
    Column("connections", String(255), nullable=True),
    Column("s3_bucket_name", String(63), nullable=True),
    Column("s3_region", String(64), nullable=True),
    Column("s3_prefix", String(1024), nullable=True),
    Column("token_hash", String(64), nullable=False, comment="HMAC-SHA256 of the token"),
    Column("token_ciphertext", Text(), nullable=False, comment="Fernet, key RBR_SECRET_KEY"),
    Column("version", Integer(), nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("approved_at", UtcDateTime(), nullable=True),
    Column(
        "replaces_id",
        String(36),
        nullable=True,
        comment="the silent bucket this pending registration evidently replaces",
    ),
    # Registrations from one host (same address and operating system) are looked up together
    # to tell a honeypot's restart under a new name from a new honeypot.
    Index(None, "ip_address", "operating_system"),
    Column("last_seen", UtcDateTime(), nullable=True, comment="last successful poll"),
    Column("last_status_at", UtcDateTime(), nullable=True),
    Column("last_reachable", Boolean(), nullable=True),
    Column("last_error_class", String(32), nullable=True),
    Column("last_latency_ms", Float(), nullable=True),
    Column(
        "tls_cert_sha256",
        String(64),
        nullable=True,
        comment="pinned certificate (sha256 of DER, hex); NULL: verified by CA",
    ),
    Column(
        "delivery_mode",
        String(16),
        nullable=False,
        server_default="pull",
        comment="pull, agent or s3-drop",
    ),
    Column(
        "delivery_mode_pinned",
        Boolean(),
        nullable=False,
        server_default="0",
        comment="set by an operator: never inferred again",
    ),
)

bucket_aliases = Table(
    "bucket_aliases",
    metadata,
    # Names of registrations merged into a bucket (a honeypot's restarts under new names):
    # the name still designates the bucket it was merged into (`rbr_runtime.db.aliases`).
    Column("name", String(128), primary_key=True),
    Column("bucket_id", String(36), nullable=False, index=True, comment="the bucket it names"),
    Column("merged_id", String(36), nullable=False, comment="the merged registration's own id"),
    Column(
        "registered_at",
        UtcDateTime(),
        nullable=False,
        comment="when the merged registration was made",
    ),
    Column("merged_at", UtcDateTime(), nullable=False),
)

drop_sources = Table(
    "drop_sources",
    metadata,
    # One row per instance folder found in an S3 drop location (reported by the log-extractor
    # on drop.discovered), and the bucket it is linked to. Written by the registrar only; the
    # log-extractor reads which folders belong to a bucket.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("uri_sha256", String(64), nullable=False, unique=True, comment="of the folder URI"),
    Column("location", String(1100), nullable=False, comment="s3://BUCKET/PREFIX/"),
    Column("region", String(64), nullable=False),
    Column("folder", String(255), nullable=False),
    Column("bucket_id", String(36), nullable=True, index=True, comment="NULL: unclaimed"),
    Column("linked_by", String(16), nullable=True, comment="name, identity, restart, operator"),
    Column("linked_at", UtcDateTime(), nullable=True),
    Column("objects", Integer(), nullable=False, server_default="0"),
    Column("size_bytes", BigInteger(), nullable=False, server_default="0"),
    Column("newest_upload_at", UtcDateTime(), nullable=True),
    Column("starts", JSON(), nullable=False, comment="[[instance name, registered name]]"),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
)

bucket_status_history = Table(
    "bucket_status_history",
    metadata,
    # Every poll outcome (bucket.status) the registrar applied, kept for
    # RBR_STATUS_HISTORY_RETENTION: what the operator API shows as a bucket's status history.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("bucket_id", String(36), nullable=False),
    Column("name", String(128), nullable=False),
    Column("polled_at", UtcDateTime(), nullable=False),
    Column("reachable", Boolean(), nullable=False),
    Column("error_class", String(32), nullable=True),
    Column("latency_ms", Float(), nullable=True),
    UniqueConstraint("bucket_id", "polled_at"),
    Index(None, "name", "polled_at"),
    Index(None, "polled_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Every change an operator made through the operator API or the CLI (registrar only).
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(16), nullable=False, comment="viewer, operator or admin"),
    Column("action", String(64), nullable=False, comment="e.g. bucket.approve, alert.ack"),
    Column("target", String(255), nullable=True, comment="bucket name, alert id, channel"),
    Column("detail", JSON(), nullable=False),
    Column("outcome", String(32), nullable=False, comment="e.g. updated, unchanged, not_found"),
    Index(None, "at"),
    Index(None, "actor", "at"),
    Index(None, "action", "at"),
)

# --- registrar: operator accounts of the console ----------------------------------------------

operator_users = Table(
    "operator_users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False, comment="argon2id (PHC string)"),
    Column("role", String(16), nullable=False, comment="viewer, operator or admin"),
    Column("disabled", Boolean(), nullable=False, server_default="0"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

operator_sessions = Table(
    "operator_sessions",
    metadata,
    # Server-side console sessions. Only a hash of the cookie's value is kept, so reading the
    # table gives no one a live session.
    Column("id_sha256", String(64), primary_key=True, comment="sha256 of the cookie's value"),
    Column("user_name", String(64), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)

login_failures = Table(
    "login_failures",
    metadata,
    # Failed console logins, per (user name, client address): the login rate limit counts them.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key_sha256", String(64), nullable=False, comment="sha256 of user name and address"),
    Column("failed_at", UtcDateTime(), nullable=False),
    Index(None, "key_sha256", "failed_at"),
    Index(None, "failed_at"),
)

# --- poller ------------------------------------------------------------------------------------

poller_state = Table(
    "poller_state",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("last_poll_slot", BigInteger(), nullable=False, server_default="-1"),
    Column("last_poll_at", UtcDateTime(), nullable=True),
    Column("last_success_at", UtcDateTime(), nullable=True),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("consecutive_failures", Integer(), nullable=False, server_default="0"),
    Column("last_error_class", String(32), nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("alert_open", Boolean(), nullable=False, server_default="0"),
    Column("alert_id", String(64), nullable=True),
    Column("alert_opened_at", UtcDateTime(), nullable=True),
    Column("bucket_id", String(36), nullable=True, comment="the registration this state is of"),
    Column("last_attempt_at", UtcDateTime(), nullable=True, comment="latest recorded poll"),
    Column(
        "polling_since",
        UtcDateTime(),
        nullable=True,
        comment="start of the current run of polls without a gap",
    ),
    Column(
        "alert_basis",
        String(16),
        nullable=True,
        comment="what the open alert judged: polls (NULL) or uploads",
    ),
)

# --- log-extractor -----------------------------------------------------------------------------

extract_cursors = Table(
    "extract_cursors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("http_cursor", String(255), nullable=True, comment="X-Log-Cursor last stored"),
    Column("last_extract_slot", BigInteger(), nullable=False, server_default="-1"),
    Column("last_attempt_at", UtcDateTime(), nullable=True),
    Column("last_extracted_at", UtcDateTime(), nullable=True, comment="last successful cycle"),
    Column("consecutive_failures", Integer(), nullable=False, server_default="0"),
    Column("last_error", String(500), nullable=True),
    Column(
        "pending_event",
        Text(),
        nullable=True,
        comment="logs.extracted data stored with its cursor, until the broker confirmed it",
    ),
    Column("lease_owner", String(255), nullable=True, comment="host:pid extracting now"),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column(
        "last_upload_at",
        UtcDateTime(),
        nullable=True,
        comment="newest LastModified in the bucket's S3 sources, as last listed",
    ),
    Column("uploads_checked_at", UtcDateTime(), nullable=True, comment="that listing's time"),
    Column("uploads_first_checked_at", UtcDateTime(), nullable=True),
)

s3_copy_ledger = Table(
    "s3_copy_ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("source_uri_sha256", String(64), nullable=False),
    Column("source_uri", String(2048), nullable=False),
    Column("source_etag", String(128), nullable=True),
    Column("size_bytes", BigInteger(), nullable=False, server_default="0"),
    Column("target_key", String(1024), nullable=True, comment="NULL: empty, nothing stored"),
    Column("copied_at", UtcDateTime(), nullable=False),
    Column(
        "source_sha256",
        String(64),
        nullable=True,
        comment="sha256 of the source's first size_bytes bytes (NULL: before 0009)",
    ),
    UniqueConstraint("name", "source_uri_sha256"),
)

drop_file_ledger = Table(
    "drop_file_ledger",
    metadata,
    # One row per bucket and file name of its drop folders: a honeypot that restarts uploads
    # the same daily files again under its new instance folder; they are one logical file,
    # copied from where its last copy ended.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("file_sha256", String(64), nullable=False, comment="of the file name"),
    Column("file_name", String(1024), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False, comment="bytes copied so far"),
    Column("source_sha256", String(64), nullable=False, comment="sha256 of those bytes"),
    Column("reference_uri", String(2048), nullable=False, comment="source holding them"),
    Column("reference_etag", String(128), nullable=True),
    Column("target_key", String(1024), nullable=True, comment="the last raw object made"),
    Column("copied_at", UtcDateTime(), nullable=False),
    UniqueConstraint("name", "file_sha256"),
)

# --- parser ------------------------------------------------------------------------------------

logs = Table(
    "logs",
    metadata,
    # The original schema's columns, names kept. log_size is the record's size in bytes: the
    # original comment said MB, which would round every record to 0.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("ip_address", String(255), nullable=False),
    Column("log", LongText, nullable=False, comment="the raw record, as received (capped)"),
    Column("log_size", Integer(), nullable=False, comment="the record's true size in bytes"),
    Column("created_at", UtcDateTime(), nullable=False, server_default=UtcNow()),
    # What parsing found.
    Column("log_format", String(16), nullable=False, comment="rustbucket, cowrie, sshd, ..."),
    Column("event_type", String(64), nullable=False, comment="normalised; unparsed if unknown"),
    Column("native_type", String(64), nullable=True, comment="Cowrie eventid, tracing target"),
    Column("event_time", UtcDateTime(), nullable=True),
    Column("level", String(16), nullable=True),
    Column("protocol", String(16), nullable=True),
    Column("source_ip", String(45), nullable=True),
    Column("source_port", Integer(), nullable=True),
    Column("username", String(255), nullable=True),
    Column("password", String(255), nullable=True),
    Column("command", Text(), nullable=True),
    Column("url", String(2048), nullable=True),
    Column("http_method", String(16), nullable=True),
    Column("http_status", Integer(), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("file_sha256", String(64), nullable=True),
    Column("session", String(64), nullable=True),
    Column("message", Text(), nullable=True),
    # Where the record came from, and the key that makes re-parsing a no-op: a record is
    # identified by its bucket, its object's content and its position, so one bucket's
    # content stored twice (under two keys) is one set of rows, while two buckets sending
    # the same bytes each keep theirs. sha256 first: an object's rows are found by its hash
    # alone too. created_at is in the key because MySQL partitions logs by day of created_at
    # (a partition column must be in every unique key); it adds nothing to the identity,
    # since every parse of an object stamps its rows with the object's one created_at from
    # log_objects. At most 256 + 1020 + 4 + 8 bytes of key (utf8mb4), within InnoDB's 3072.
    Column("source_key", String(1024), nullable=False, comment="S3 key of the raw object"),
    Column("source_sha256", String(64), nullable=False),
    Column("record_no", Integer(), nullable=False, comment="position in the raw object, from 0"),
    UniqueConstraint("source_sha256", "name", "record_no", "created_at"),
    Index(None, "name", "created_at"),
    Index(None, "created_at"),
    # Log search (operator API): newest first within each filter (InnoDB appends the id).
    Index(None, "event_type", "created_at"),
    Index(None, "source_ip", "created_at"),
    Index(None, "username", "created_at"),
)

log_objects = Table(
    "log_objects",
    metadata,
    # One row per object of a bucket whose rows are in logs: the created_at all its rows
    # carry, set when it is first parsed and reused by every later parse (replays), so a
    # replayed row meets its original in the unique key of logs. Retention deletes it after
    # the object's rows.
    Column("source_sha256", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column(
        "created_at",
        UtcDateTime(),
        nullable=False,
        comment="first parse; the created_at of all the object's rows",
    ),
    Index(None, "created_at"),
)

# --- analyst -----------------------------------------------------------------------------------

log_analysis = Table(
    "log_analysis",
    metadata,
    # The original schema's columns, names kept.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("ip_address", String(255), nullable=False),
    Column("log_analysis", LongText, nullable=False, comment="the written analysis"),
    Column("created_at", UtcDateTime(), nullable=False, server_default=UtcNow()),
    # The window analysed and how.
    Column("window_start", UtcDateTime(), nullable=False),
    Column("window_end", UtcDateTime(), nullable=False),
    Column("analyser", String(16), nullable=False, comment="claude or rules"),
    Column("model", String(128), nullable=True),
    Column("fallback_reason", String(500), nullable=True, comment="why rules, not claude"),
    Column("severity", String(16), nullable=False),
    Column("findings", JSON(), nullable=False),
    Column("iocs", JSON(), nullable=False),
    Column("recommended_actions", JSON(), nullable=False),
    Column("log_rows", Integer(), nullable=False),
    Column("stages", Integer(), nullable=False, server_default="0", comment="model requests"),
    Column("digest_tokens", Integer(), nullable=False, server_default="0", comment="estimated"),
    Column("input_tokens", Integer(), nullable=False, server_default="0"),
    Column("output_tokens", Integer(), nullable=False, server_default="0"),
    UniqueConstraint("name", "window_start", "window_end"),
    Index(None, "created_at"),
    Index(None, "name", "id"),
)

analysis_backlog = Table(
    "analysis_backlog",
    metadata,
    Column("name", String(128), nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),
    Column("ip_address", String(255), nullable=False),
    Column("first_noted_at", UtcDateTime(), nullable=False),
    Column("claimed_by", String(255), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True, comment="lease of the analysing replica"),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("last_error", String(500), nullable=True),
    PrimaryKeyConstraint("name", "window_start"),
)

analysis_alert_state = Table(
    "analysis_alert_state",
    metadata,
    # One row per (bucket, finding key) ever alerted: firing while later windows keep
    # reporting the finding, resolved when a window no longer does (or the bucket goes quiet).
    Column("name", String(128), nullable=False),
    Column("finding_key", String(64), nullable=False),
    Column("alert_id", String(64), nullable=False),
    Column("state", String(16), nullable=False, comment="firing or resolved"),
    Column("severity", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("opened_window_start", UtcDateTime(), nullable=False),
    Column("last_window_start", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("name", "finding_key"),
    Index(None, "state", "last_window_start"),
)

iocs = Table(
    "iocs",
    metadata,
    # Indicators of compromise, one row per indicator fleet-wide (`type:value`), updated by
    # every analysis that sights it. The registrar reads it for exports.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ioc_type", String(16), nullable=False, comment="ip, domain, url, sha256, ..."),
    Column("value", String(2048), nullable=False, comment="normalised (refanged, lower-case)"),
    Column("key_sha256", String(64), nullable=False, comment="sha256 of type:value"),
    Column("first_seen", UtcDateTime(), nullable=False, comment="start of the first window"),
    Column("last_seen", UtcDateTime(), nullable=False, comment="end of the latest window"),
    Column("sightings", Integer(), nullable=False, comment="(bucket, window) pairs"),
    Column("hits", BigInteger(), nullable=False, comment="log records behind the sightings"),
    Column("bucket_count", Integer(), nullable=False),
    Column("buckets", JSON(), nullable=False, comment="names, the first 50"),
    Column("techniques", JSON(), nullable=False, comment="ATT&CK technique ids"),
    Column("roles", JSON(), nullable=False, comment="what it did: login, download, ..."),
    Column("confidence", Integer(), nullable=False, comment="0-100"),
    Column("source", String(16), nullable=False, comment="rules or claude (first sighting)"),
    Column("source_rule", String(64), nullable=False, comment="finding or role that found it"),
    Column("first_analysis_id", BigInteger(), nullable=True),
    Column("last_analysis_id", BigInteger(), nullable=True),
    Column("country", String(2), nullable=True),
    Column("as_org", String(255), nullable=True),
    Column("geo_source", String(64), nullable=True, comment="the enrichment database and date"),
    Column("attributes", JSON(), nullable=False, comment="URL parts, ..."),
    Column("campaign_at", UtcDateTime(), nullable=True, comment="last campaign alert about it"),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("key_sha256"),
    Index(None, "updated_at", "id"),
    Index(None, "last_seen"),
)

ioc_sightings = Table(
    "ioc_sightings",
    metadata,
    # Which bucket sighted which indicator in which window: campaigns (one indicator on
    # several buckets within a window) and replays (a sighting is recorded once).
    Column("ioc_id", BigInteger(), nullable=False),
    Column("name", String(128), nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),
    Column("hits", Integer(), nullable=False),
    PrimaryKeyConstraint("ioc_id", "name", "window_start"),
    Index(None, "window_start"),
)

technique_sightings = Table(
    "technique_sightings",
    metadata,
    # ATT&CK techniques evidenced per bucket: first and last seen, windows, records.
    Column("name", String(128), nullable=False),
    Column("technique", String(16), nullable=False),
    Column("first_seen", UtcDateTime(), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("windows", Integer(), nullable=False),
    Column("findings", Integer(), nullable=False, comment="findings that evidenced it"),
    PrimaryKeyConstraint("name", "technique"),
    Index(None, "technique"),
)

# --- notifier ----------------------------------------------------------------------------------

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=False, unique=True),
    Column("dedupe_key", String(255), nullable=False, index=True),
    Column("type", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False, comment="firing, resolved or acknowledged"),
    Column("bucket", String(128), nullable=True),
    Column("title", String(300), nullable=False),
    Column("detail", LongText, nullable=False, comment="up to 20,000 characters"),
    Column("source", String(255), nullable=False),
    Column("context", JSON(), nullable=False),
    Column("fired_at", UtcDateTime(), nullable=False),
    Column(
        "last_seen_at", UtcDateTime(), nullable=True, comment="last firing event (NULL: fired_at)"
    ),
    Column("repeats", Integer(), nullable=False, server_default="0"),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolved_by", String(32), nullable=True, comment="event, superseded or one-shot"),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("acknowledged_by", String(255), nullable=True),
    Column("last_event_id", String(64), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index(None, "state", "fired_at"),
    Index(None, "bucket", "id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=True, index=True),
    Column("dedupe_key", String(255), nullable=True),
    Column("channel", String(128), nullable=False),
    Column("kind", String(16), nullable=False, comment="trigger, resolve, digest or test"),
    Column("attempt", Integer(), nullable=False),
    Column("status", String(24), nullable=False, comment="sent, retrying, failed or rejected"),
    Column("http_status", Integer(), nullable=True),
    Column("error", String(1000), nullable=True, comment="short, sanitised: no URL, no key"),
    Column("created_at", UtcDateTime(), nullable=False),
    Index(None, "channel", "created_at"),
    Index(None, "created_at"),
)

notifier_deliveries = Table(
    "notifier_deliveries",
    metadata,
    # One row per (alert occurrence, channel, kind): the durable plan of what must be sent and
    # how it ended. Written before anything is sent, so a crash never loses a notification and
    # a redelivered alert never sends one twice.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=False),
    Column("channel", String(128), nullable=False),
    Column("kind", String(16), nullable=False, comment="trigger or resolve"),
    Column(
        "state",
        String(16),
        nullable=False,
        comment="pending, sending, waiting, sent, throttled, digested, failed, rejected or skipped",
    ),
    Column("window_start", UtcDateTime(), nullable=True, comment="throttle window counted in"),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("detail", String(500), nullable=True, comment="why it ended so, sanitised"),
    # A delivery is claimed (state sending) before anything is sent, and the claim is renewed
    # at every try: another replica that gets the alert after a rebalance waits for it instead
    # of sending the same notification a second time, and takes over once the claim is stale.
    Column(
        "claimed_by",
        String(255),
        nullable=True,
        comment="replica that is sending (or last sent) it",
    ),
    Column(
        "claimed_at",
        UtcDateTime(),
        nullable=True,
        comment="when the claim was taken or last renewed",
    ),
    # A delivery the channel did not take in its first tries waits (state waiting) for the
    # retry sweeper, which tries it again at next_attempt_at until the channel's retry schedule,
    # counted from waiting_since, runs out. Its alert's offset is committed meanwhile.
    Column(
        "next_attempt_at",
        UtcDateTime(),
        nullable=True,
        comment="when the retry sweeper tries it next (NULL: not in the retry schedule)",
    ),
    Column(
        "waiting_since",
        UtcDateTime(),
        nullable=True,
        comment="when its retry schedule began (its first failed try or deferral)",
    ),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("alert_id", "channel", "kind"),
    Index(None, "channel", "state", "window_start"),
    Index(None, "state", "next_attempt_at"),
)

notifier_delivery_events = Table(
    "notifier_delivery_events",
    metadata,
    # The alerts message a waiting delivery came from, byte for byte: if the retry schedule
    # runs out, this message goes to alerts.dlq (so `rbr dlq replay alerts` can retry it),
    # long after its offset was committed. Deleted once the delivery ended.
    Column("delivery_id", BigId, primary_key=True, autoincrement=False),
    Column("topic", String(255), nullable=False),
    Column("kafka_partition", Integer(), nullable=False),
    Column("kafka_offset", BigInteger(), nullable=False),
    Column("message_key", LongBlob, nullable=True),
    Column("value", LongBlob, nullable=True),
    Column("headers", JSON(), nullable=False, comment="[[name, base64 value], ...]"),
    Column("created_at", UtcDateTime(), nullable=False),
)

notifier_windows = Table(
    "notifier_windows",
    metadata,
    # Per channel and throttle window: how many notifications went out (the throttle) and who
    # is sending the window's digest (a claim with a lease, so one replica sends it).
    Column("channel", String(128), nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),
    Column("window_end", UtcDateTime(), nullable=False),
    Column("sent", Integer(), nullable=False, server_default="0"),
    Column("folded", Integer(), nullable=False, server_default="0"),
    Column("digest_claimed_by", String(255), nullable=True),
    Column("digest_claimed_at", UtcDateTime(), nullable=True),
    Column("digests_sent", Integer(), nullable=False, server_default="0"),
    PrimaryKeyConstraint("channel", "window_start"),
    Index(None, "window_end"),
)

__all__ = [
    "alerts",
    "analysis_alert_state",
    "analysis_backlog",
    "audit_log",
    "bucket_aliases",
    "bucket_status_history",
    "buckets",
    "drop_file_ledger",
    "drop_sources",
    "extract_cursors",
    "ioc_sightings",
    "iocs",
    "log_analysis",
    "log_objects",
    "login_failures",
    "logs",
    "metadata",
    "notifications",
    "notifier_deliveries",
    "notifier_delivery_events",
    "notifier_windows",
    "operator_sessions",
    "operator_users",
    "outbox",
    "poller_state",
    "s3_copy_ledger",
    "task_runs",
    "technique_sightings",
]
