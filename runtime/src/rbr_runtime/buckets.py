"""Calling rustbuckets: base URL, TLS, the token header, and addresses never to call.

The poller and the log-extractor both call buckets; the registrar refuses registrations with
addresses the registry must never call. All three use this module, so the rules are the same.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Annotated, Any, Generic, Literal, TypeVar

import httpx
from prometheus_client import Gauge
from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings, SecretKeys, split_csv
from rbr_schemas import BucketRegistered

log = logging.getLogger(__name__)

CA_BUNDLE_UNUSABLE = Gauge(
    "rbr_bucket_ca_unusable",
    "1 while RBR_BUCKET_CA_FILE is missing or unreadable: no bucket is called meanwhile.",
)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpNetworks = Annotated[list[IpNetwork], NoDecode, BeforeValidator(split_csv)]

ALWAYS_ALLOWED_PORT = 443
"""The one port buckets may always be called on; RBR_ALLOWED_BUCKET_PORTS adds others."""

PortNumber = Annotated[int, Field(ge=1, le=65535)]


def _port_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
        raise ValueError(f"{text[:20]!r} is not a port (8443) or a range of ports (8000-8999)")
    low = int(first)
    high = int(last) if dash else low
    if low > high:
        raise ValueError(f"{text[:20]!r}: a range goes from the lower port to the higher one")
    return low, high


def _port_ranges(value: Any) -> Any:
    items = split_csv(value)
    if not isinstance(items, list):
        return items
    return [_port_range(item) if isinstance(item, str) else item for item in items]


PortRanges = Annotated[list[tuple[PortNumber, PortNumber]], NoDecode, BeforeValidator(_port_ranges)]
"""Ports and port ranges from a comma-separated variable: `8443,9000-9100`."""


def _networks(*described: tuple[str, str]) -> list[tuple[IpNetwork, str]]:
    return [(ipaddress.ip_network(network), what) for network, what in described]


# Never called unless inside RBR_ALLOWED_BUCKET_NETWORKS: every range the IANA special-purpose
# registries mark as not globally reachable (private networks, loopback, link-local, shared
# carrier-grade NAT space, documentation, benchmarking, reserved), multicast and broadcast.
# No honeypot lives there, and the registry calling them is how a compromised honeypot holding
# the enrollment key would reach hosts inside the registry's own network. docs/operations.md
# and the registrar's README list the same ranges: keep them in step.
REFUSED_V4 = _networks(
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved or broadcast"),
)
REFUSED_V6 = _networks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo tunnel"),
    ("2001::/23", "IETF protocol assignment (benchmarking, ORCHID, anycast services)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated, private)"),
    ("ff00::/8", "multicast"),
)
# Cloud instance metadata and host agents hand out the machine's credentials: never called,
# whatever RBR_ALLOWED_BUCKET_NETWORKS allows (allowing 100.64.0.0/10 for honeypots behind a
# carrier-grade NAT must not open Alibaba's metadata service).
CLOUD_METADATA = _networks(
    ("169.254.169.254/32", "AWS, Azure, Google Cloud, Oracle, OpenStack, DigitalOcean..."),
    ("169.254.170.2/32", "AWS ECS task credentials"),
    ("169.254.170.23/32", "AWS EKS Pod Identity"),
    ("169.254.0.23/32", "Tencent Cloud"),
    ("169.254.42.42/32", "Scaleway"),
    ("100.100.100.200/32", "Alibaba Cloud"),
    ("168.63.129.16/32", "Azure WireServer"),
    ("192.0.0.192/32", "Oracle Cloud (legacy)"),
    ("fd00:ec2::254/128", "AWS"),
    ("fd00:ec2::23/128", "AWS EKS Pod Identity"),
    ("fd20:ce::254/128", "Google Cloud"),
    ("fd00:a9fe:a9fe::1/128", "Akamai (Linode)"),
    ("fd00:42::42/128", "Scaleway"),
    ("fe80::a9fe:a9fe/128", "OpenStack, Akamai (Linode)"),
)
ALLOWED_NETWORKS_HELP = (
    "CIDRs whose private, loopback, link-local or other non-public addresses buckets may "
    "have (e.g. 10.20.0.0/16 for internal honeypots, 127.0.0.0/8 locally); cloud metadata "
    "addresses stay refused."
)
ALLOWED_PORTS_HELP = (
    "Ports buckets may be called on besides 443, and ranges: e.g. 8443,9000-9100. Others are "
    "refused at registration and never called."
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class BucketAccessSettings(CommonSettings):
    """Settings of the services that call buckets (poller, log-extractor)."""

    secret_key: SecretKeys = Field(
        description="Decrypts bucket tokens; the same value as the registrar's (RBR_SECRET_KEY)."
    )
    bucket_ca_file: str | None = Field(
        default=None, description="CA bundle bucket certificates are verified against."
    )
    bucket_tls_verify: bool = Field(
        default=True, description="Verify bucket certificates. Turning it off logs a warning."
    )
    bucket_scheme: Literal["https", "http"] = "https"
    bucket_default_port: int = Field(default=443, ge=1, le=65535)
    bucket_timeout: float = Field(default=10.0, gt=0, description="Seconds per bucket call.")
    bucket_concurrency: int = Field(default=200, ge=1, description="Bucket calls in flight.")
    allowed_bucket_networks: IpNetworks = Field(
        default_factory=list,
        description=ALLOWED_NETWORKS_HELP,
    )
    allowed_bucket_ports: PortRanges = Field(
        default_factory=list,
        description=ALLOWED_PORTS_HELP,
    )


def forbidden_reason(address: str, allowed: list[IpNetwork]) -> str | None:
    """Returns why the registry must not call this address, or None if it may.

    Refused: cloud metadata addresses always; the ranges in REFUSED_V4 and REFUSED_V6 unless
    inside an allowed network; anything that is not an IP literal. An IPv6 address that leads
    to an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, NAT64) is judged by that IPv4 address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address literal"
    embedded = _embedded_ipv4(ip)
    target = embedded or ip
    shown = f"it leads to {target}, " if embedded is not None else ""
    for network, what in CLOUD_METADATA:
        if target in network:
            return f"{shown}a cloud metadata address ({what}); never called"
    if any(target in network for network in allowed):
        return None
    refused = REFUSED_V4 if isinstance(target, ipaddress.IPv4Address) else REFUSED_V6
    for network, what in refused:
        if target in network:
            return (
                f"{shown}{what} addresses ({network}) are not called unless inside "
                "RBR_ALLOWED_BUCKET_NETWORKS"
            )
    return None


def forbidden_port_reason(
    port: int, allowed: list[tuple[int, int]], default_port: int | None = None
) -> str | None:
    """Returns why the registry must not call a bucket on this port, or None if it may.

    Allowed: 443, the ports and ranges of RBR_ALLOWED_BUCKET_PORTS, and the configured
    default port (what a registration without a port is called on).
    """
    if port in (ALWAYS_ALLOWED_PORT, default_port):
        return None
    if any(low <= port <= high for low, high in allowed):
        return None
    return (
        f"port {port} is not called: buckets are called on 443 and the ports in "
        "RBR_ALLOWED_BUCKET_PORTS"
    )


def refused_call(record: BucketRegistered, settings: BucketAccessSettings) -> str | None:
    """Returns why a bucket must not be called at its registered address and port, or None.

    Checked before every call: a bucket registered before its address or port was refused
    (or before the operator narrowed the allowed networks and ports) is not called either.
    """
    port = record.port or settings.bucket_default_port
    reasons = [
        reason
        for reason in (
            forbidden_reason(record.ip_address, settings.allowed_bucket_networks),
            forbidden_port_reason(
                port, settings.allowed_bucket_ports, settings.bucket_default_port
            ),
        )
        if reason is not None
    ]
    if not reasons:
        return None
    return f"refusing to call {record.ip_address}: {'; '.join(reasons)}"


class RefusalLog:
    """Logs each bucket's refused call once (per bucket and reason), not at every attempt."""

    def __init__(self) -> None:
        self._logged: set[tuple[str, str]] = set()

    def warn(self, name: str, reason: str) -> None:
        """Logs a warning the first time this bucket is refused for this reason."""
        if (name, reason) in self._logged:
            return
        self._logged.add((name, reason))
        log.warning("bucket %s not called: %s", name, reason, extra={"bucket": name})


def _embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """Returns the IPv4 address an IPv6 one leads to, if any.

    IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still
    tunnelled by some stacks), 6to4 (`2002:aabb:ccdd::`) and NAT64 (`64:ff9b::a.b.c.d`):
    otherwise `::ffff:10.0.0.1` or `::169.254.169.254` would reach what the IPv4 form cannot.
    `::` and `::1` are the IPv6 unspecified and loopback addresses, not IPv4-compatible ones.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def base_url(record: BucketRegistered, settings: BucketAccessSettings) -> str:
    """Returns `{scheme}://{ip}[:port]` for a bucket (IPv6 in brackets).

    A bucket with a pinned certificate is always called over HTTPS, whatever
    RBR_BUCKET_SCHEME says: its token must not travel where the pin cannot be checked.
    """
    ip = ipaddress.ip_address(record.ip_address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    port = record.port or settings.bucket_default_port
    scheme = "https" if record.tls_cert_sha256 is not None else settings.bucket_scheme
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def token_header(token: str) -> dict[str, str]:
    """Returns the header a bucket authenticates the registry's calls with."""
    return {"Authorization": f"Token {token}"}


def vault(settings: BucketAccessSettings) -> TokenVault:
    """Returns the token vault for the configured RBR_SECRET_KEY."""
    return TokenVault.from_setting(settings.secret_key.get_secret_value())


def tls_verification(settings: BucketAccessSettings) -> ssl.SSLContext | bool:
    """Returns what httpx should verify bucket certificates with."""
    if not settings.bucket_tls_verify:
        log.warning(
            "RBR_BUCKET_TLS_VERIFY is off: bucket certificates are NOT verified; anyone on the "
            "path can impersonate a bucket and read its token"
        )
        return False
    if settings.bucket_ca_file:
        if not os.path.exists(settings.bucket_ca_file):
            raise BucketCAFileMissing(settings.bucket_ca_file)
        return ssl.create_default_context(cafile=settings.bucket_ca_file)
    return ssl.create_default_context()


class PinMismatch(ssl.SSLCertVerificationError):
    """The bucket presented another certificate than the one pinned at its registration."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "certificate does not match the pin"


def certificate_sha256(der: bytes) -> str:
    """Returns the pin of a certificate: the SHA-256 of its DER form, in lowercase hex."""
    return hashlib.sha256(der).hexdigest()


def check_pin(der: bytes | None, pin: str) -> None:
    """Checks that the certificate a bucket presented is the pinned one.

    Raises:
        PinMismatch: no certificate, or another one than pinned (both fingerprints said).
    """
    if der is None:
        raise PinMismatch(f"the bucket presented no certificate; pinned sha256 {pin}")
    presented = certificate_sha256(der)
    if not hmac.compare_digest(presented, pin):
        raise PinMismatch(
            f"the bucket's certificate (sha256 {presented}) is not the one pinned at its "
            f"registration (sha256 {pin}); not calling it"
        )


def pinned_tls_context(pin: str) -> ssl.SSLContext:
    """Returns a client TLS context that accepts exactly the certificate of that pin.

    The chain and the host name are not verified (the bucket agent's certificate is its
    own, self-signed); instead the certificate presented is compared with the pin as soon
    as the handshake completes, inside the handshake call, so a mismatch fails the
    connection before any byte of the request (and so the token) is written. Both the
    blocking sockets of `httpx.Client` and the memory BIOs of `httpx.AsyncClient` (anyio)
    go through the classes set here.
    """

    class _PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            check_pin(self.getpeercert(binary_form=True), pin)

    class _PinnedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantReadError until the handshake is done
            check_pin(self.getpeercert(binary_form=True), pin)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.sslsocket_class = _PinnedSocket
    context.sslobject_class = _PinnedObject
    return context


CA_FILE_HINT = (
    "on the local stack `rbr simulate` writes it when it starts the simulated fleet; otherwise "
    "point RBR_BUCKET_CA_FILE at the CA bundle that issued the buckets' certificates"
)


class BucketCAFileMissing(FileNotFoundError):
    """RBR_BUCKET_CA_FILE names a file that does not exist (yet)."""

    def __init__(self, path: str) -> None:
        """Says which file is missing and what to do."""
        super().__init__(f"RBR_BUCKET_CA_FILE {path} does not exist: {CA_FILE_HINT}")


def client_options(
    settings: BucketAccessSettings, concurrency: int | None = None, *, keep_alive: bool = True
) -> dict[str, Any]:
    """Returns the httpx client options for calling buckets, except `verify`.

    Bounded connections, the bucket timeout, no proxies from the environment, and no
    redirects: a bucket must not be able to send the registry (and its token header)
    somewhere else. Without `keep_alive` each connection is closed after its answer: for
    callers that call each bucket once per interval, far longer than a connection stays
    reusable, an idle pool only costs (measured: 15% of a poll's CPU time).
    """
    connections = concurrency or settings.bucket_concurrency
    idle = min(connections, 100) if keep_alive else 0
    return {
        "timeout": httpx.Timeout(settings.bucket_timeout),
        "limits": httpx.Limits(max_connections=connections, max_keepalive_connections=idle),
        "follow_redirects": False,
        "trust_env": False,
    }


def make_async_client(settings: BucketAccessSettings) -> httpx.AsyncClient:
    """Returns an async HTTP client for calling buckets, TLS as configured now.

    Raises:
        OSError, ssl.SSLError: RBR_BUCKET_CA_FILE is missing or not a CA bundle. Long-running
            services use `BucketClients`, which waits for the file instead.
    """
    return httpx.AsyncClient(verify=tls_verification(settings), **client_options(settings))


ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)


class BucketClients(Generic[ClientT]):
    """The HTTP clients for calling buckets: CA-verified ones, and one per pinned certificate.

    The CA-verified client is rebuilt when the CA bundle file changes.

    RBR_BUCKET_CA_FILE may appear after the service started (the local stack's simulator
    writes it) or be replaced (a new CA). While it is missing or unreadable `current()` returns
    None, the error is logged once and `rbr_bucket_ca_unusable` is 1; calls wait rather than
    the service crashing or skipping verification. No poll is attempted meanwhile, so buckets
    do not turn unresponsive either (alerting on that gauge is the operator's signal). The
    new bundle is used as soon as it is there. Clients replaced by a newer one are kept until
    `made()` is closed by the owner, since calls in flight may still use them.

    A bucket with a pinned certificate (`tls_cert_sha256`, the bucket agent's) is called with
    a client of its own pin (`for_bucket`), which needs no CA bundle: its connection pool
    holds only connections whose certificate matched that pin.
    """

    def __init__(
        self,
        settings: BucketAccessSettings,
        make: Callable[[ssl.SSLContext | bool], ClientT],
    ) -> None:
        self._settings = settings
        self._make: Callable[[ssl.SSLContext | bool], ClientT] = make
        self._client: ClientT | None = None
        self._stamp: tuple[int, int] | None = None
        self._made: list[ClientT] = []
        self._complained = False
        self._pinned: dict[str, ClientT] = {}
        self._pinned_lock = threading.Lock()

    def _ca_stamp(self) -> tuple[int, int] | None:
        path = self._settings.bucket_ca_file
        if not path or not self._settings.bucket_tls_verify:
            return (0, 0)
        try:
            info = os.stat(path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def current(self) -> ClientT | None:
        """Returns the client for the current CA bundle, or None while it is unusable."""
        stamp = self._ca_stamp()
        if stamp is not None and stamp == self._stamp and self._client is not None:
            return self._client
        if stamp is None:
            self._complain("does not exist")
            return None
        try:
            client = self._make(tls_verification(self._settings))
        except (OSError, ssl.SSLError) as error:
            self._complain(f"cannot be loaded ({type(error).__name__})")
            return None
        if self._client is not None:
            log.info("bucket CA bundle changed; using the new one")
        self._client, self._stamp, self._complained = client, stamp, False
        CA_BUNDLE_UNUSABLE.set(0)
        self._made.append(client)
        return client

    def pinned(self, pin: str) -> ClientT:
        """Returns the client that accepts exactly the certificate of this pin."""
        with self._pinned_lock:
            client = self._pinned.get(pin)
            if client is None:
                client = self._make(pinned_tls_context(pin))
                self._pinned[pin] = client
                self._made.append(client)
            return client

    def for_bucket(self, record: BucketRegistered) -> ClientT | None:
        """Returns the client to call a bucket with: its pin's, else `current()`."""
        if record.tls_cert_sha256 is not None:
            return self.pinned(record.tls_cert_sha256)
        return self.current()

    def made(self) -> list[ClientT]:
        """Returns every client made so far, for the owner to close."""
        return list(self._made)

    def _complain(self, why: str) -> None:
        CA_BUNDLE_UNUSABLE.set(1)
        if self._complained:
            return
        self._complained = True
        if why == "does not exist":
            # Expected on a fresh local stack until the simulator writes it: a warning that
            # says what to do, not an error.
            log.warning(
                "RBR_BUCKET_CA_FILE %s does not exist yet: no bucket is called until it does (%s)",
                self._settings.bucket_ca_file,
                CA_FILE_HINT,
            )
            return
        log.error(
            "RBR_BUCKET_CA_FILE %s %s: buckets cannot be verified; calls wait until it is usable",
            self._settings.bucket_ca_file,
            why,
        )
