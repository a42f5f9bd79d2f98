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
    spec = MaskSpec("tokenize", scope="purpose:x")
    assert after.verify_token("ada@example.org", token, "purpose:x") == before.mask_key_id(spec) == after.mask_key_id(
        spec, version=1)
    assert after.verify_token("ada@example.org", fresh, "purpose:x") == after.mask_key_id(spec)
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


# -- keys per (scope, classification): token version 2 ---------------------------------------------

CLASSES = ["email", "national_id", "phone", None]


@given(st.lists(st.text(max_size=20), min_size=1, max_size=20), st.sampled_from(CLASSES), st.sampled_from(CLASSES))
@settings(max_examples=40, deadline=None)
def test_tokens_agree_within_a_classification_and_differ_across(values, a, b):
    kr = Keyring(OLD)
    array = pa.array(values)
    for method, params in [("tokenize", {}), ("pseudonymize", {"kind": "email"}), ("format_preserving", {})]:
        first = mask_array(array, MaskSpec(method, params, "purpose:x", classification=a), kr).to_pylist()
        again = mask_array(array, MaskSpec(method, params, "purpose:x", classification=a), kr).to_pylist()
        assert first == again  # deterministic within a classification: joins on tokens keep working
        if a != b and method != "format_preserving":  # (format_preserving keeps '' and punctuation as they are)
            other = mask_array(array, MaskSpec(method, params, "purpose:x", classification=b), kr).to_pylist()
            assert not set(first) & set(other)  # no value masks alike under two classifications


@given(st.lists(st.from_regex(r"[0-9]{3}-[0-9]{2}-[0-9]{4}", fullmatch=True), min_size=1, max_size=30, unique=True),
       st.sampled_from(["email", "phone", "person_name", None]))
@settings(max_examples=40, deadline=None)
def test_a_chosen_constant_through_another_columns_mask_never_gives_a_sensitive_token(secrets_, other):
    """The codebook attack by construction: the caller's guesses (here: every secret itself) pushed through
    the mask of any other classification never reproduce a national_id token."""
    kr = Keyring(OLD)
    sensitive = set(mask_array(pa.array(secrets_), MaskSpec("tokenize", scope="purpose:x",
                                                             classification="national_id"), kr).to_pylist())
    for method in ("tokenize", "format_preserving"):
        pushed = mask_array(pa.array(secrets_), MaskSpec(method, scope="purpose:x", classification=other), kr)
        assert not sensitive & set(pushed.to_pylist())


def test_each_method_and_classification_has_its_own_key_and_key_id():
    kr = Keyring({1: OLD, 2: NEW})
    specs = [MaskSpec("tokenize", scope=s, classification=c) for s in ("global", "purpose:x") for c in CLASSES]
    keys = {kr.mask_key(sp, use) for sp in specs for use in ("tokenize", "shift_date", "format_preserving")}
    assert len(keys) == len(specs) * 3
    assert not keys & {kr.key(s, use) for s in ("global", "purpose:x") for use in ("tokenize", "shift_date")}
    ids = {kr.mask_key_id(sp) for sp in specs}
    assert len(ids) == len(specs) and all(re.fullmatch(r"k2-t3-[0-9a-f]{8}", i) for i in ids)
    email = MaskSpec("tokenize", scope="purpose:x", classification="email")
    assert kr.mask_key_id(email) == kr.mask_key_id(MaskSpec("pseudonymize", {"kind": "email"}, "purpose:x",
                                                            classification="email"))  # one key, one id
    assert kr.mask_key_id(email, version=1) == Keyring(OLD).mask_key_id(email)
    assert kr.mask_key(email, "scope").hex()[:8] not in kr.mask_key_id(email)


def test_version_1_tokens_stay_verifiable_by_their_recorded_key_id():
    """Tokens made before per-classification keys (one key per scope) verify with the key id the ledger recorded."""
    from lineage_guard.mask.tokenize import tokenize

    before = Keyring({1: OLD})
    recorded = before.key_id("purpose:x")  # what the ledger holds for a version-1 token
    old = tokenize(pa.array(["ada@example.org"]), MaskSpec("tokenize", scope="purpose:x"), before,
                   token_version=1)[0].as_py()
    after = Keyring({1: OLD, 2: NEW})
    assert after.verify_token("ada@example.org", old, "purpose:x", classification="email") == recorded
    new = mask_array(pa.array(["ada@example.org"]), MaskSpec("tokenize", scope="purpose:x", classification="email"),
                     after)[0].as_py()
    assert new != old
    assert after.verify_token("ada@example.org", new, "purpose:x", classification="email") == after.mask_key_id(
        MaskSpec("tokenize", scope="purpose:x", classification="email"))
    assert after.verify_token("ada@example.org", new, "purpose:x", classification="phone") is None


def test_version_2_tokens_stay_verifiable_by_their_recorded_key_id():
    """Tokens made before the compiled HMAC (raw key bytes, key id `-t2-`) verify with the id the ledger recorded."""
    from lineage_guard.mask.tokenize import tokenize

    email = MaskSpec("tokenize", scope="purpose:x", classification="email")
    before = Keyring({1: OLD})
    old = tokenize(pa.array(["ada@example.org"]), email, before, token_version=2)[0].as_py()
    recorded = before.mask_key_id(email, token_version=2)
    assert re.fullmatch(r"k1-t2-[0-9a-f]{8}", recorded)
    key = before.mask_key(email, "tokenize")
    assert old == "tok_" + hmac.new(key, b"ada@example.org", hashlib.sha256).hexdigest()[:24]
    after = Keyring({1: OLD, 2: NEW})
    assert after.verify_token("ada@example.org", old, "purpose:x", classification="email") == recorded
    new = mask_array(pa.array(["ada@example.org"]), email, after)[0].as_py()
    assert new != old and after.verify_token("ada@example.org", new, "purpose:x",
                                             classification="email") == after.mask_key_id(email)
    assert after.mask_key_id(email).startswith("k2-t3-")
    with pytest.raises(ConfigError):
        after.mask_key_id(email, token_version=1)
