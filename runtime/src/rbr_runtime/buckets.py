"""Calling rustbuckets: base URL, TLS, the token header, and addresses never to call.

The poller and the log-extractor both call buckets; the registrar refuses registrations with
addresses the registry must never call. All three use this module, so the rules are the same.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
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

IpNetworks = Annotated[
    list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode, BeforeValidator(split_csv)
]
_FORBIDDEN_V4 = [
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("240.0.0.0/4"),
    ipaddress.ip_network("255.255.255.255/32"),
]
_FORBIDDEN_V6 = [
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS instance metadata over IPv6
]
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]


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
        description="CIDRs let through the forbidden-address check (e.g. 127.0.0.0/8 locally).",
    )


def forbidden_reason(
    address: str, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str | None:
    """Returns why the registry must not call this address, or None if it may.

    Refused unless inside an allowed network: loopback, link-local (169.254.0.0/16, where
    cloud metadata services live), multicast, unspecified and reserved addresses. Returns a
    reason for anything that is not an IP literal, too.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address literal"
    ip = _embedded_ipv4(ip) or ip
    if any(ip in network for network in allowed):
        return None
    forbidden = _FORBIDDEN_V4 if isinstance(ip, ipaddress.IPv4Address) else _FORBIDDEN_V6
    for network in forbidden:
        if ip in network:
            return f"{_describe(ip)} addresses ({network}) are never called"
    return None


def _embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """Returns the IPv4 address an IPv6 one leads to (mapped, 6to4, NAT64), if any.

    Otherwise `::ffff:169.254.169.254` or `64:ff9b::a9fe:a9fe` would reach cloud metadata.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _describe(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    return "reserved"


def base_url(record: BucketRegistered, settings: BucketAccessSettings) -> str:
    """Returns `{scheme}://{ip}[:port]` for a bucket (IPv6 in brackets)."""
    ip = ipaddress.ip_address(record.ip_address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    port = record.port or settings.bucket_default_port
    default = 443 if settings.bucket_scheme == "https" else 80
    return f"{settings.bucket_scheme}://{host}" + ("" if port == default else f":{port}")


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
    settings: BucketAccessSettings, concurrency: int | None = None
) -> dict[str, Any]:
    """Returns the httpx client options for calling buckets, except `verify`.

    Bounded connections, the bucket timeout, no proxies from the environment, and no
    redirects: a bucket must not be able to send the registry (and its token header)
    somewhere else.
    """
    connections = concurrency or settings.bucket_concurrency
    return {
        "timeout": httpx.Timeout(settings.bucket_timeout),
        "limits": httpx.Limits(
            max_connections=connections, max_keepalive_connections=min(connections, 100)
        ),
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
    """The HTTP client for calling buckets, rebuilt when the CA bundle file changes.

    RBR_BUCKET_CA_FILE may appear after the service started (the local stack's simulator
    writes it) or be replaced (a new CA). While it is missing or unreadable `current()` returns
    None, the error is logged once and `rbr_bucket_ca_unusable` is 1; calls wait rather than
    the service crashing or skipping verification. No poll is attempted meanwhile, so buckets
    do not turn unresponsive either (alerting on that gauge is the operator's signal). The
    new bundle is used as soon as it is there. Clients replaced by a newer one are kept until
    `made()` is closed by the owner, since calls in flight may still use them.
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
