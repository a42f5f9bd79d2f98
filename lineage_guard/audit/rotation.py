"""Key rotation: an entry, signed by the ledger's current key, that hands the chain over to a new key.

The rotation entry's body names the new public key and carries an endorsement: the new
key's signature over (position, previous hash, old key id, new key id). The old key's
signature says its holder handed over; the endorsement says the new key's holder took
over this exact history (the previous hash commits to every entry before it), so a
verifier that pins only the new key still authenticates the entries signed before.
From the rotation on, only the new key may sign: an entry signed by a retired key fails.

Example:
    >>> from lineage_guard.audit.signing import Signer
    >>> old, new = Signer.generate(), Signer.generate()
    >>> body = rotation_body(old, new, run_id="r", seq=4, prev="ab" * 32, by="dana", reason="yearly")
    >>> body["rotation"]["new_key_id"] == new.key_id
    True
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .signing import Signer, key_id_for, verify_signature

KIND = "key_rotation"
PURPOSE = "ledger signing key rotation"


def endorsement_message(seq: int, prev: str, old_key_id: str, new_key_id: str) -> bytes:
    return f"lineage_guard.ledger.key-rotation/v1\n{seq}\n{prev}\n{old_key_id}\n{new_key_id}".encode()


def rotation_body(old: Signer, new: Signer, *, run_id: str, seq: int, prev: str, by: str,
                  reason: str | None) -> dict[str, Any]:
    """The body of the rotation entry at position `seq` after the entry hashed `prev`."""
    now = datetime.now(UTC).isoformat()
    return {
        "kind": KIND,
        "run_id": run_id,
        "who": {"principal": by, "kind": "human", "groups": []},
        "purpose": PURPOSE,
        "statement": None,
        "source": {"tables": [], "datasets": []},
        "columns": [],
        "used": [],
        "rows": 0,
        "bytes": 0,
        "decision": {"action": "allow", "reasons": [reason[:500]] if reason else []},
        "outcome": KIND,
        "started_at": now,
        "ended_at": now,
        "rotation": {
            "old_key_id": old.key_id,
            "new_key_id": new.key_id,
            "new_public_key": new.public_key,
            "endorsement": new.sign(endorsement_message(seq, prev, old.key_id, new.key_id)),
        },
    }


def rotation_problem(doc: dict[str, Any]) -> str | None:
    """Why `doc` (an entry whose own signature checked out) is a bad rotation; None if it is none or good."""
    body = doc["body"]
    rotation = body.get("rotation") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (body.get("kind") != KIND and rotation is None):
        return None
    if body.get("kind") != KIND or not isinstance(rotation, dict):
        return "a key rotation entry without its rotation record (or the other way round)"
    new_key, new_id, endorsement = (rotation.get(k) for k in ("new_public_key", "new_key_id", "endorsement"))
    if not all(isinstance(v, str) for v in (new_key, new_id, endorsement)):
        return "a key rotation entry whose new key or endorsement is missing"
    if rotation.get("old_key_id") != doc["key_id"]:
        return "a key rotation entry not signed by the key it retires"
    try:
        if key_id_for(new_key) != new_id:
            return "a key rotation entry whose new key id does not match its public key"
    except ValueError:
        return "a key rotation entry whose new public key is not hex"
    if new_id == doc["key_id"]:
        return "a key rotation entry that hands over to the same key"
    if not verify_signature(new_key, endorsement_message(doc["seq"], doc["prev"], doc["key_id"], new_id),
                            endorsement):
        return "a key rotation entry whose new key did not endorse the handover"
    return None
