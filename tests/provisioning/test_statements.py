"""Statement merging: the portal's statement goes in and out; nobody else's statement moves."""
import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.errors import PermanentAwsError
from provisioning.statements import (
    KEY_POLICY_MAX_BYTES,
    ROLE_INLINE_POLICIES_MAX_CHARS,
    SECRET_POLICY_MAX_CHARS,
    TRUST_POLICY_MAX_CHARS,
    check_policy_size,
    find_statement,
    merge_statement,
    policy_size,
    remove_statement,
    statements_of,
)

OUR_SID = "DmsAccessPortal42"
ROOT = {"Sid": "EnableRootPermissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"}


def ours(version: int = 1) -> dict:
    return {
        "Sid": OUR_SID,
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:role/r"},
        "Action": ["kms:Decrypt", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.eu-west-{version}.amazonaws.com"}},
    }


# --- generated policies -----------------------------------------------------------------

_sids = st.one_of(st.none(), st.sampled_from(["A", "B", "Admin", "EnableRootPermissions", "DmsAccessPortal7"]), st.text(alphabet="abcXYZ0129", min_size=1, max_size=12))
_strings = st.text(alphabet="ab é\u0430\n", max_size=6)
_actions = st.one_of(st.sampled_from(["kms:*", "kms:Decrypt", "secretsmanager:*"]), st.lists(st.sampled_from(["kms:Encrypt", "kms:Decrypt", "kms:Get*"]), min_size=1, max_size=3))


@st.composite
def foreign_statement(draw) -> dict:
    statement = {
        "Effect": draw(st.sampled_from(["Allow", "Deny"])),
        "Principal": draw(st.one_of(st.just("*"), st.builds(lambda a: {"AWS": a}, st.text(alphabet="0123456789", min_size=12, max_size=12)))),
        "Action": draw(_actions),
        "Resource": "*",
    }
    sid = draw(_sids)
    if sid is not None:
        statement["Sid"] = sid
    if draw(st.booleans()):
        statement["Condition"] = {"StringEquals": {"aws:PrincipalTag/team": draw(_strings)}}
    return statement


@st.composite
def policies(draw, *, with_ours: bool | None = None) -> dict | None:
    if with_ours is not True and draw(st.integers(0, 9)) == 0:
        return None
    statements = draw(st.lists(foreign_statement(), max_size=6))
    if with_ours is None:
        with_ours = draw(st.booleans())
    if with_ours:
        statements.insert(draw(st.integers(0, len(statements))), ours(draw(st.integers(1, 3))))
    policy: dict = {}
    if draw(st.booleans()):
        policy["Version"] = draw(st.sampled_from(["2012-10-17", "2008-10-17"]))
    if draw(st.booleans()):
        policy["Id"] = draw(_strings)
    if len(statements) == 1 and draw(st.booleans()):
        policy["Statement"] = statements[0]  # AWS accepts one object instead of a list
    else:
        policy["Statement"] = statements
    return policy


def foreign(policy) -> list[dict]:
    return [s for s in statements_of(policy) if s.get("Sid") != OUR_SID]


def equivalent(a, b) -> bool:
    """Same policy, allowing a single-object Statement to come back as a one-item list and an
    empty policy to come back as no policy."""
    def canon(p):
        if p is None or not statements_of(p):
            return None
        p = dict(p)
        p["Statement"] = statements_of(p)
        return p
    return canon(a) == canon(b)


@settings(max_examples=100, deadline=None)
@given(policies(), st.integers(1, 3))
def test_merge_keeps_every_foreign_statement_in_order(policy, version):
    original = copy.deepcopy(policy)
    merged = merge_statement(policy, ours(version))
    assert policy == original, "the input policy must not be modified"
    assert foreign(merged) == foreign(policy)
    assert [s for s in statements_of(merged) if s.get("Sid") == OUR_SID] == [ours(version)]
    for key in ("Version", "Id"):
        if policy and key in policy:
            assert merged[key] == policy[key]
    if not policy:
        assert merged["Version"] == "2012-10-17"


@settings(max_examples=100, deadline=None)
@given(policies(), st.integers(1, 3))
def test_merge_twice_equals_merge_once(policy, version):
    once = merge_statement(policy, ours(version))
    assert merge_statement(once, ours(version)) == once


@settings(max_examples=100, deadline=None)
@given(policies(with_ours=True))
def test_merge_replaces_our_statement_where_it_stands(policy):
    position = [s.get("Sid") for s in statements_of(policy)].index(OUR_SID)
    merged = merge_statement(policy, ours(9))
    assert statements_of(merged)[position] == ours(9)


@settings(max_examples=100, deadline=None)
@given(policies(with_ours=False))
def test_remove_undoes_exactly_the_merge(policy):
    assert equivalent(remove_statement(merge_statement(policy, ours()), OUR_SID), policy)


@settings(max_examples=100, deadline=None)
@given(policies())
def test_remove_takes_out_only_our_sid(policy):
    removed = remove_statement(policy, OUR_SID)
    assert find_statement(removed, OUR_SID) is None
    assert statements_of(removed) == foreign(policy)


@settings(max_examples=100, deadline=None)
@given(policies(), st.booleans())
def test_the_root_statement_of_a_key_policy_always_survives(policy, remove):
    key_policy = merge_statement(policy, ROOT) if policy is None else {**policy, "Statement": [ROOT, *statements_of(policy)]}
    after = remove_statement(merge_statement(key_policy, ours()), OUR_SID) if remove else merge_statement(key_policy, ours())
    assert ROOT in statements_of(after)


@settings(max_examples=100, deadline=None)
@given(policies())
def test_policies_given_as_json_text_merge_the_same(policy):
    if policy is None:
        return
    assert merge_statement(json.dumps(policy), ours()) == merge_statement(policy, ours())


# --- specific cases -----------------------------------------------------------------------


def test_merge_into_nothing_creates_a_versioned_policy():
    for empty in (None, {}, "", "  "):
        assert merge_statement(empty, ours()) == {"Version": "2012-10-17", "Statement": [ours()]}


def test_single_object_statement_with_a_foreign_sid():
    policy = {"Version": "2012-10-17", "Statement": ROOT}
    merged = merge_statement(policy, ours())
    assert merged["Statement"] == [ROOT, ours()]
    assert remove_statement(policy, OUR_SID) == policy


def test_single_object_statement_that_is_ours():
    policy = {"Version": "2012-10-17", "Statement": ours(1)}
    assert merge_statement(policy, ours(2))["Statement"] == [ours(2)]
    assert remove_statement(policy, OUR_SID) is None


def test_duplicate_sids_collapse_to_one_in_the_first_place():
    policy = {"Statement": [ours(1), ROOT, ours(2)]}
    assert merge_statement(policy, ours(3))["Statement"] == [ours(3), ROOT]
    assert remove_statement(policy, OUR_SID)["Statement"] == [ROOT]


def test_sid_match_is_exact():
    policy = {"Statement": [dict(ours(), Sid=OUR_SID.lower()), dict(ours(), Sid=OUR_SID + "0")]}
    merged = merge_statement(policy, ours())
    assert len(merged["Statement"]) == 3
    assert remove_statement(policy, OUR_SID) == policy


def test_removing_the_last_statement_leaves_no_policy():
    assert remove_statement({"Version": "2012-10-17", "Statement": [ours()]}, OUR_SID) is None
    assert remove_statement(None, OUR_SID) is None


@pytest.mark.parametrize("statement", [{}, {"Sid": ""}, {"Effect": "Allow"}, {"Sid": 5}])
def test_a_statement_without_sid_cannot_be_merged(statement):
    with pytest.raises(ValueError, match="Sid"):
        merge_statement(None, statement)


def test_find_statement():
    policy = {"Statement": [ROOT, ours()]}
    assert find_statement(policy, OUR_SID) == ours()
    assert find_statement(policy, "Nope") is None
    assert find_statement(None, OUR_SID) is None


# --- size limits --------------------------------------------------------------------------


def _padded(kind_size: int, *, unit_text=lambda n: "x" * n, spaces: int = 0) -> dict:
    """A policy whose compact JSON is exactly ``kind_size`` characters (plus ``spaces`` spaces)."""
    skeleton = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": ""}]}, separators=(",", ":"))
    filler = kind_size - len(skeleton)
    return {"Version": "2012-10-17", "Statement": [{"Sid": unit_text(filler) + " " * spaces}]}


def test_secret_policy_limit_is_in_characters():
    assert check_policy_size("secret_policy", _padded(SECRET_POLICY_MAX_CHARS)) == SECRET_POLICY_MAX_CHARS
    with pytest.raises(PermanentAwsError) as caught:
        check_policy_size("secret_policy", _padded(SECRET_POLICY_MAX_CHARS + 1))
    assert caught.value.diagnosis == "policy_too_large"
    assert "20481" in caught.value.message and "20480" in caught.value.message


def test_key_policy_limit_is_in_utf8_bytes():
    assert check_policy_size("key_policy", _padded(KEY_POLICY_MAX_BYTES)) == KEY_POLICY_MAX_BYTES
    with pytest.raises(PermanentAwsError):
        check_policy_size("key_policy", _padded(KEY_POLICY_MAX_BYTES + 1))
    # "é" is one character but two bytes once encoded.
    with pytest.raises(PermanentAwsError):
        check_policy_size("key_policy", _padded(KEY_POLICY_MAX_BYTES, unit_text=lambda n: "é" + "x" * (n - 1)))


def test_inline_policy_limit_ignores_whitespace():
    at_limit_with_spaces = _padded(ROLE_INLINE_POLICIES_MAX_CHARS, spaces=500)
    assert check_policy_size("role_inline_policies", at_limit_with_spaces) == ROLE_INLINE_POLICIES_MAX_CHARS
    pretty = json.dumps(_padded(ROLE_INLINE_POLICIES_MAX_CHARS), indent=4)
    assert check_policy_size("role_inline_policies", pretty) == ROLE_INLINE_POLICIES_MAX_CHARS
    with pytest.raises(PermanentAwsError, match="10241 non-whitespace characters"):
        check_policy_size("role_inline_policies", _padded(ROLE_INLINE_POLICIES_MAX_CHARS + 1))


def test_inline_policy_limit_sums_all_inline_policies_of_the_role():
    half = _padded(ROLE_INLINE_POLICIES_MAX_CHARS // 2)
    assert check_policy_size("role_inline_policies", [half, half]) == ROLE_INLINE_POLICIES_MAX_CHARS
    with pytest.raises(PermanentAwsError):
        check_policy_size("role_inline_policies", [half, half, _padded(40)])


def test_trust_policy_limit():
    assert check_policy_size("trust_policy", _padded(TRUST_POLICY_MAX_CHARS, spaces=10)) == TRUST_POLICY_MAX_CHARS
    with pytest.raises(PermanentAwsError):
        check_policy_size("trust_policy", _padded(TRUST_POLICY_MAX_CHARS + 1))


def test_secret_and_key_limits_count_whitespace():
    assert policy_size("secret_policy", _padded(100, spaces=5)) == 105
    assert policy_size("key_policy", _padded(100, spaces=5)) == 105


def test_unknown_policy_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown policy kind"):
        check_policy_size("bucket_policy", {})
