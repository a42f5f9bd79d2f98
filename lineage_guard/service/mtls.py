"""Client certificates (mTLS): who the TLS handshake says the caller is, and which certificate it holds.

With a client CA configured (`serve --client-ca` or `service.client_ca_file`), gRPC refuses every
handshake without a certificate that chains to that CA and is valid now: such callers never reach
a handler. For the rest, gRPC hands the call its peer identity, the certificate's first
SubjectAlternativeName (a SPIFFE URI, a DNS name, ...) or, with none, its common name. That name
maps to an identity through `service.principals` entries with `issuer: client-certificate`, the
way a JWT's subject does.

pyarrow exposes only that name, not the certificate. So that the ledger can name the certificate
(its SHA-256), our client also sends it in-band with a proof of possession: a signature, by the
certificate's key, over a fixed context string and the current time. The server checks that the
in-band certificate chains to the same CA, is valid now, names the same peer identity as the
handshake, and that the proof verifies within `PROOF_WINDOW_S`; otherwise the call is refused.
A client that sends no in-band certificate (the ADBC driver) is still identified by the handshake;
its ledger entry says the digest is unknown.

Example:
    >>> headers = proof_headers(cert_pem, key_pem)                                 # doctest: +SKIP
    >>> ClientCertificates(ca_pem).check(dict(headers), b"spiffe://example.org/ml")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from .config import CLIENT_CERT_ISSUER

__all__ = ["CLIENT_CERT_ISSUER", "CertificateRefused", "ClientCertificates", "PeerCertificate", "peer_name",
           "proof_headers"]
CERT_HEADER = "x-lineage-guard-client-cert"
PROOF_HEADER = "x-lineage-guard-client-proof"
PROOF_TIME_HEADER = "x-lineage-guard-client-proof-time"
PROOF_WINDOW_S = 300
_CONTEXT = b"lineage-guard client certificate proof v1\n"


class CertificateRefused(Exception):
    """The in-band certificate or its proof did not check out; `reason` says which part."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class PeerCertificate:
    """What the ledger records of a verified client certificate (no key material)."""

    name: str                      # the handshake's peer identity: first SAN, else CN
    sha256: str | None             # of the DER certificate, when the client presented it in-band
    ca: str                        # the client CA's subject
    not_after: datetime | None = None

    @property
    def tls_peer(self) -> str:
        return f"{self.name} {self.sha256}" if self.sha256 else f"{self.name} (certificate digest unknown: not presented in-band)"


def peer_name(cert) -> str | None:
    """gRPC's peer identity of a certificate: its first SubjectAlternativeName, else its common name."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = []
    for san in sans:   # the kinds gRPC names a peer by, in the certificate's order
        if isinstance(san, x509.DNSName | x509.UniformResourceIdentifier | x509.RFC822Name | x509.IPAddress):
            return str(san.value)
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _message(moment: int) -> bytes:
    return _CONTEXT + str(moment).encode()


def proof_headers(cert_pem: bytes, key_pem: bytes, *, now: float | None = None) -> list[tuple[bytes, bytes]]:
    """The in-band certificate and a fresh proof of possession, as call headers (client side)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    moment = int(now if now is not None else time.time())
    message = _message(moment)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        from ..errors import ConfigError

        raise ConfigError(f"client keys of type {type(key).__name__} are not supported (use EC, RSA or Ed25519)")
    der = cert.public_bytes(serialization.Encoding.DER)
    return [(CERT_HEADER.encode(), base64.b64encode(der)), (PROOF_HEADER.encode(), base64.b64encode(signature)),
            (PROOF_TIME_HEADER.encode(), str(moment).encode())]


class ClientCertificates:
    """Checks the in-band certificate against the client CA and the handshake's peer identity."""

    def __init__(self, ca_pem: bytes):
        from cryptography import x509

        self.roots = x509.load_pem_x509_certificates(ca_pem)
        if not self.roots:
            raise ValueError("the client CA file holds no PEM certificate")
        self.ca = self.roots[0].subject.rfc4514_string()

    def check(self, headers: dict[str, list[Any]], handshake_name: bytes | str | None) -> PeerCertificate | None:
        """The verified peer certificate of this call, or None when the handshake named no peer."""
        from .auth import header

        name = handshake_name.decode("utf-8", "replace") if isinstance(handshake_name, bytes) else handshake_name
        if not name:
            return None
        encoded = header(headers, CERT_HEADER)
        if encoded is None:
            return PeerCertificate(name, None, self.ca)
        cert, der = self._load(encoded)
        self._verify_chain(cert)
        if peer_name(cert) != name:
            raise CertificateRefused("the in-band client certificate names another peer than the TLS handshake's "
                                     "certificate; send the certificate the connection was made with")
        self._verify_proof(cert, headers)
        return PeerCertificate(name, "sha256:" + hashlib.sha256(der).hexdigest(), self.ca, cert.not_valid_after_utc)

    def _load(self, encoded: str):
        from cryptography import x509

        try:
            der = base64.b64decode(encoded, validate=True)
            return x509.load_der_x509_certificate(der), der
        except ValueError:
            raise CertificateRefused(f"the {CERT_HEADER} header is not a base64 DER certificate") from None

    def _verify_chain(self, cert) -> None:
        """Signed directly by a certificate of the client CA file, and valid now.

        The handshake already ran OpenSSL's full verification for this peer name; this check only has
        to show the in-band certificate comes from the same CA (no stricter profile than the handshake's).
        """
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertificateRefused("the in-band client certificate is expired or not valid yet")
        for root in self.roots:
            if root.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(root)
                return
            except (ValueError, TypeError, InvalidSignature):
                continue
        raise CertificateRefused("the in-band client certificate is not signed by the client CA")

    def _verify_proof(self, cert, headers) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        from .auth import header

        moment_text, proof = header(headers, PROOF_TIME_HEADER), header(headers, PROOF_HEADER)
        if not moment_text or not proof:
            raise CertificateRefused(f"an in-band client certificate needs its proof ({PROOF_HEADER}, {PROOF_TIME_HEADER})")
        try:
            moment = int(moment_text)
            signature = base64.b64decode(proof, validate=True)
        except ValueError:
            raise CertificateRefused("the client certificate proof is malformed") from None
        if abs(time.time() - moment) > PROOF_WINDOW_S:
            raise CertificateRefused(f"the client certificate proof is older than {PROOF_WINDOW_S} s (or from the "
                                     "future); check the client's clock")
        key, message = cert.public_key(), _message(moment)
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            else:
                raise CertificateRefused("the client certificate's key type is not supported")
        except InvalidSignature:
            raise CertificateRefused("the client certificate proof does not verify: the caller does not hold "
                                     "the in-band certificate's key") from None
