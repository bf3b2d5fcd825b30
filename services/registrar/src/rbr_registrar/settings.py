"""The registrar's configuration (`RBR_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from rbr_registrar.client_address import ProxyHeader
from rbr_runtime.buckets import ALLOWED_NETWORKS_HELP, ALLOWED_PORTS_HELP, IpNetworks, PortRanges
from rbr_runtime.settings import CommonSettings, CsvList, SecretKeys

DEFAULT_PORT = 8000
WEEK = 7 * 24 * 3600.0


class RegistrarSettings(CommonSettings):
    """Settings of the registrar: the HTTP API, the outbox relay and the status consumer."""

    service_name: str = "registrar"
    http_port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="Port of the API, /docs, /healthz, /readyz and /metrics.",
    )
    secret_key: SecretKeys = Field(
        description="Encrypts bucket tokens at rest and in bucket.registered (RBR_SECRET_KEY); "
        "comma-separated keys rotate: the first encrypts, any decrypts."
    )
    enrollment_keys: CsvList = Field(
        default_factory=list,
        description="Keys a registration must carry (registration_key field or Authorization: "
        "Bearer). With keys, a registered bucket is active at once; without, new buckets wait "
        "as pending until an operator approves them.",
    )
    operator_key: SecretStr | None = Field(
        default=None,
        description="Bearer key of the operator API (/api/v1/buckets); the API is off without.",
    )
    allowed_bucket_networks: IpNetworks = Field(
        default_factory=list, description=ALLOWED_NETWORKS_HELP
    )
    allowed_bucket_ports: PortRanges = Field(default_factory=list, description=ALLOWED_PORTS_HELP)
    trusted_proxies: IpNetworks = Field(
        default_factory=list,
        description="CIDRs of the reverse proxies in front of the registrar. Only from them is "
        "the forwarding header (RBR_TRUSTED_PROXY_HEADER) believed, for the address of a "
        "registration sent with an unspecified address (0.0.0.0, ::); from any other peer the "
        "peer's own address is used.",
    )
    trusted_proxy_header: ProxyHeader = Field(
        default=ProxyHeader.X_FORWARDED_FOR,
        description="The forwarding header the trusted proxies write: x-forwarded-for, or "
        "forwarded (RFC 7239). The other one is ignored.",
    )
    pending_expiry: float = Field(
        default=WEEK,
        ge=0,
        description="Seconds after its registration a pending bucket no operator approved is "
        "removed (a tombstone is published); 0 keeps pending buckets forever.",
    )
    pending_expiry_interval: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between two checks for expired pending buckets (one replica "
        "runs each).",
    )
    replacement_silence: float = Field(
        default=900.0,
        ge=0,
        description="Seconds without a sign of life (a successful poll; for an s3-drop "
        "bucket, also an upload to its drop folders) after which a bucket is silent: a new "
        "pending registration from its address and operating system is then shown as "
        "replacing it.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    registration_batch_max: int = Field(
        default=200,
        ge=1,
        description="Most registrations committed in one transaction (group commit).",
    )
    registration_writers: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Group-commit transactions in flight at once, each on its own database "
        "connection (MySQL; on SQLite one). One is fastest on an idle database (918 against "
        "576 registrations/s with four, docs/benchmarks.md); more can help when the "
        "database's commits are slow.",
    )
    outbox_scan_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between scans of the outbox when no commit woke the relay.",
    )
    outbox_batch_size: int = Field(default=500, ge=1, description="Outbox rows sent at once.")
    reseed_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between checks that bucket.registered holds every registered "
        "bucket (it is re-published from the buckets table where not). Also checked at start "
        "and when the broker comes back; only the replica relaying the outbox checks.",
    )
    status_history_retention: float = Field(
        default=30 * 24 * 3600.0,
        ge=0,
        description="Seconds a bucket's poll outcomes are kept in its status history (the "
        "operator API's /buckets/{name}/status-history); 0 keeps them forever.",
    )
    log_search_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a log search of the operator API or the console may run on "
        "MariaDB or MySQL before the database stops it and the caller is asked to narrow it "
        "(by bucket or time); 0: no limit.",
    )
    access_log: bool = Field(default=False, description="Log every HTTP request.")
    console_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a second listener for the console (/console/) and the operator "
        "API (/api/v1/...), meant for an internal network. When set, the main port "
        "(RBR_HTTP_PORT) serves only registration, the buckets' own updates and health; when "
        "unset, the main port serves everything.",
    )
    console_host: str = Field(
        default="127.0.0.1",
        description="Address the console listener (RBR_CONSOLE_PORT) binds.",
    )
    console_session_lifetime: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="Seconds a console login lasts; then the operator logs in again.",
    )
    console_secure_cookie: bool = Field(
        default=False,
        description="Always mark the console's session cookie Secure (HTTPS only). It is "
        "Secure anyway when the request came over HTTPS; set this behind a proxy that "
        "terminates TLS.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed console logins allowed per user name and client address within "
        "RBR_LOGIN_FAILURE_WINDOW; further attempts are refused until the window passes.",
    )
    login_failure_window: float = Field(
        default=300.0, gt=0, description="Seconds over which failed console logins count."
    )
