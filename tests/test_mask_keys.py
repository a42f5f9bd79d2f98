"""Keyring: master from env/file/argument, HKDF scope keys, key ids, rotation; key material never shown."""

import copy
import hashlib
import hmac
import pickle
import re
import secrets

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage_guard.errors import ConfigError
from lineage_guard.mask import Keyring, MaskSpec, mask_array
from lineage_guard.mask.digest import hmac_sha256_many, sha256_many
from lineage_guard.mask.keys import ENV_KEY, ENV_KEY_FILE

OLD, NEW = secrets.token_hex(32), secrets.token_hex(32)


def test_from_env_reads_the_master(master_key):
    kr = Keyring.from_env()
    assert kr.version == 1 and kr.versions == (1,)
    assert kr.key("global") == Keyring(bytes.fromhex(master_key)).key("global")


def test_from_file(tmp_path, monkeypatch):
    path = tmp_path / "master.key"
    path.write_text(f"2:{NEW},1:{OLD}\n")
    monkeypatch.delenv(ENV_KEY)
    monkeypatch.setenv(ENV_KEY_FILE, str(path))
    kr = Keyring.from_env()
    assert (kr.version, kr.versions) == (2, (2, 1))
    assert kr.key("tenant:acme", version=1) == Keyring(OLD).key("tenant:acme")


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, f"no masking key: set {ENV_KEY}"),
        ({ENV_KEY: "ab" * 16}, "too short: a master key needs at least 32 bytes"),
        ({ENV_KEY: "zz" * 40}, "is not valid hex"),
        ({ENV_KEY: f"{NEW},{OLD}"}, "every entry must be `<version>:<hex>`"),
        ({ENV_KEY: f"1:{NEW},1:{OLD}"}, "version 1 is given twice"),
        ({ENV_KEY: f"0:{NEW}"}, "invalid version"),
        ({ENV_KEY: " , "}, "is empty"),
        ({ENV_KEY_FILE: "/nonexistent/lg.key"}, "names a file that cannot be read"),
    ],
)
def test_bad_master_is_a_clear_error_that_never_echoes_it(env, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)) as exc:
        Keyring.from_env(env)
    for part in re.split(r"[,:]", env.get(ENV_KEY, "")):  # a key file's path may be shown, its content never
        assert len(part) < 16 or part not in str(exc.value)


@pytest.mark.parametrize("bad", ["", "a b", "x" * 201, "é", None, 3])
def test_bad_scope(bad):
    with pytest.raises(ConfigError, match="key scope is 1-200 characters"):
        Keyring(OLD).key(bad)


def test_keys_differ_by_scope_use_and_version():
    kr = Keyring({1: OLD, 2: NEW})
    keys = {kr.key(s, u, version=v) for s in ("global", "purpose:a", "purpose:b") for u in ("scope", "tokenize")
            for v in (1, 2)}
    assert len(keys) == 12 and all(len(k) == 32 for k in keys)
    assert kr.key("global") == Keyring(NEW).key("global")  # HKDF: a function of master and scope only


def test_key_ids_name_keys_without_revealing_them():
    kr = Keyring({1: OLD, 2: NEW})
    ids = {kr.key_id(s, version=v) for s in ("global", "group:clinicians") for v in (1, 2)}
    assert len(ids) == 4 and all(re.fullmatch(r"k[12]-[0-9a-f]{8}", i) for i in ids)
    assert kr.key_id("global") == Keyring(NEW, version=2).key_id("global")
    assert kr.key("global").hex()[:8] not in kr.key_id("global")
    with pytest.raises(ConfigError, match=r"no master key version 3; versions held: \[1, 2\]"):
        kr.key_id("global", version=3)


def test_rotation_keeps_old_tokens_verifiable():
    before = Keyring({1: OLD})
    token = mask_array(pa.array(["ada@example.org"]), MaskSpec("tokenize", scope="purpose:x"), before)[0].as_py()
    after = Keyring({1: OLD, 2: NEW})
    fresh = mask_array(pa.array(["ada@example.org"]), MaskSpec("tokenize", scope="purpose:x"), after)[0].as_py()
    assert fresh != token
    assert after.verify_token("ada@example.org", token, "purpose:x") == before.key_id("purpose:x") == after.key_id(
        "purpose:x", version=1)
    assert after.verify_token("ada@example.org", fresh, "purpose:x") == after.key_id("purpose:x")
    assert after.verify_token("bob@example.org", token, "purpose:x") is None
    assert after.verify_token("ada@example.org", token, "purpose:y") is None
    assert Keyring({2: NEW}).verify_token("ada@example.org", token, "purpose:x") is None


def test_repr_pickle_and_errors_never_show_key_material():
    kr = Keyring({1: OLD, 2: NEW})
    shown = repr(kr) + str(kr)
    secrets_hex = [OLD, NEW, kr.key("global").hex(), kr.key("global", "tokenize").hex()]
    assert not any(s[:12] in shown for s in secrets_hex)
    assert repr(kr) == str(kr) == "Keyring(version=2, versions=[2, 1])"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(kr)
    assert copy.deepcopy({"k": kr})["k"] is kr  # frameworks that deep-copy their config still work
    with pytest.raises(ConfigError) as exc:
        Keyring({1: OLD}, version=2)
    assert OLD not in str(exc.value)


def test_master_argument_checks():
    with pytest.raises(ConfigError, match="too short"):
        Keyring(b"short")
    with pytest.raises(ConfigError, match="at least one master key"):
        Keyring({})
    with pytest.raises(ConfigError, match="must be bytes or a hex string"):
        Keyring(12345)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=100), st.lists(st.binary(max_size=200), max_size=20))
def test_digests_equal_the_standard_library(key, values):
    macs = hmac_sha256_many(key, values)
    assert [m.tobytes() for m in macs] == [hmac.new(key, v, hashlib.sha256).digest() for v in values]
    assert [m.tobytes() for m in sha256_many(values)] == [hashlib.sha256(v).digest() for v in values]
