"""DSSE envelopes (Dead Simple Signing Envelope, v1), signed with Ed25519.

The signature covers PAE(payloadType, payload), exactly per the spec
(https://github.com/secure-systems-lab/dsse/blob/master/protocol.md):

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the ASCII decimal byte length and SP one space. The envelope's `keyid` is only a
hint: `verify` accepts a signature only from a key the verifier pins.

Example:
    >>> pae("http://example.com/HelloWorld", b"hello world")
    b'DSSEv1 29 http://example.com/HelloWorld 11 hello world'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ..audit.signing import Signer, verify_signature

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(ValueError):
    """The envelope is malformed or no signature verifies against a pinned key."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign(payload: bytes, signer: Signer, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    """An envelope holding `payload`, signed by `signer` (keyid = the ledger's key id)."""
    signature = bytes.fromhex(signer.sign(pae(payload_type, payload)))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"the envelope's {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # DSSE allows URL-safe base64 too
            return base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raise EnvelopeError(f"the envelope's {what} is not valid base64") from None


def verify(envelope: Any, trusted: Mapping[str, str]) -> tuple[bytes, str]:
    """(payload, key id) when a signature verifies under a pinned key (`trusted`: key id -> hex public key)."""
    if not isinstance(envelope, dict) or not {"payloadType", "payload", "signatures"} <= set(envelope):
        raise EnvelopeError("not a DSSE envelope (needs payloadType, payload, signatures)")
    payload_type, payload = envelope["payloadType"], _b64(envelope["payload"], "payload")
    if not isinstance(payload_type, str):
        raise EnvelopeError("the envelope's payloadType is not a string")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("the envelope has no signatures")
    message = pae(payload_type, payload)
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        sig = _b64(entry.get("sig"), "signature")
        # The keyid is a hint: try every pinned key, never one the envelope brings.
        for key_id, public_key in trusted.items():
            if verify_signature(public_key, message, sig.hex()):
                return payload, key_id
    hinted = ", ".join(str(e.get("keyid")) for e in signatures if isinstance(e, dict))
    raise EnvelopeError(f"signature does not verify with the pinned ledger key(s) "
                        f"({', '.join(trusted) or 'none'}); the envelope names {hinted or 'no key'}")
