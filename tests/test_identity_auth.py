"""Identity.auth: how an identity was established travels with it through the policy's resolution."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import CORPUS

from lineage_guard.errors import ConfigError
from lineage_guard.identity import Authentication, Identity
from lineage_guard.policy import load_policy


def test_authentication_refuses_an_unknown_method():
    with pytest.raises(ConfigError, match="asserted, jwt, api_token, mtls"):
        Authentication("password")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be an Authentication"):
        Identity("svc", "service", auth={"method": "jwt"})  # type: ignore[arg-type]


def test_policy_resolution_keeps_the_authentication():
    auth = Authentication("jwt", issuer="https://idp.example", subject="svc-training",
                          token_id_digest="ab" * 32, expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                          client_address="127.0.0.1")
    policy = load_policy(CORPUS / "policy.yaml")
    declared = next(iter(policy.identities))
    resolved = policy.resolve_identity(Identity(declared, auth=auth))
    assert resolved.auth == auth
    assert resolved.auth.to_dict()["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert Identity(declared).auth is None
