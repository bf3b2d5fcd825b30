"""The agent's TLS: its own self-signed certificate (pinned by the registry), or the operator's.

* pinned (the default): on the first start the agent makes an ECDSA P-256 key and a
  self-signed certificate valid for ten years, kept in its state directory; it registers the
  certificate's SHA-256 and the registry accepts exactly that certificate. No CA to run.
* ca: the operator gives a certificate and key issued by their own CA
  (RBR_AGENT_TLS_CERT, RBR_AGENT_TLS_KEY); the registry verifies it against
  RBR_BUCKET_CA_FILE and no pin is registered.

The certificate is kept across restarts, so the pin does not change; deleting it makes a new
one, which the next registration pins instead.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from rbr_agent.files import write_private

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY_DAYS = 3650


def ensure_self_signed(state_dir: Path, common_name: str, addresses: list[str]) -> Path:
    """Returns the agent's own certificate file, made (with its key) if there is none yet."""
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path
    # Imported only to make the certificate: a running agent stays smaller without it.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(addresses)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed certificate (sha256 %s)", fingerprint(cert_path))
    return cert_path


def _alt_names(addresses: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509  # noqa: PLC0415

    names: list[x509.GeneralName] = []
    for address in dict.fromkeys(addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names or [x509.DNSName("rbr-agent")]


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def fingerprint(cert_path: Path) -> str:
    """Returns the SHA-256 of the (first) certificate in a PEM file, in lowercase hex.

    Raises:
        ValueError: the file holds no PEM certificate.
    """
    found = _PEM_CERTIFICATE.search(cert_path.read_text())
    if found is None:
        raise ValueError(f"{cert_path} holds no PEM certificate")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(found.group(0))).hexdigest()


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Returns the TLS context the agent serves with (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context
