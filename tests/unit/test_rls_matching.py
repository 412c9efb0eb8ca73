"""Matching a request descriptor as envoyproxy/ratelimit does: key+value before wildcard
before key-only, every entry must land on a node and the last one's rule applies, and
counter keys that count a key-only node per value but a key+value node together."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from rls.config import Config, load_directory, merge, parse
from rls.matching import MAX_COUNTER_KEY, Match, counter_key, drop_replaced, match
from tests.rls import upstream

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "rls" / "examples"


def config_of(*texts: str) -> Config:
    """A configuration of files written inline."""
    return merge(parse(textwrap.dedent(t), f"f{i}.yaml") for i, t in enumerate(texts))


def limit_of(found: Match | None) -> int:
    """The first limit's value of a match that has a policy."""
    assert found is not None and found.policy is not None
    return found.policy.limits[0].limit


BASIC = config_of(upstream("basic"))


@pytest.mark.parametrize(
    ("entries", "limit"),
    [
        ([("key1", "value1"), ("subkey1", "something")], 5),
        ([("key1", "value1"), ("subkey1", "subvalue1")], 10),
        ([("key2", "something")], 20),
        ([("key2", "value2")], 30),
        ([("key5", "value5")], 15),
        ([("key5", "value5"), ("subkey5", "subvalue5")], 25),
    ],
)
def test_upstream_basic_config_matches(entries: list[tuple[str, str]], limit: int) -> None:
    """Upstream's TestBasicConfig lookups find the same limits."""
    assert limit_of(match(BASIC, "test-domain", entries)) == limit


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [("key1", "something")],
        [("key1", "value1")],
        [("key2", "value2"), ("subkey", "subvalue")],
        [("key5", "value5"), ("subkey5", "subvalue")],
        [("key2", "value3")],
        [("nokey", "v")],
    ],
)
def test_upstream_basic_config_no_limit(entries: list[tuple[str, str]]) -> None:
    """Upstream's TestBasicConfig lookups that find no limit find none here."""
    assert match(BASIC, "test-domain", entries) is None


def test_an_unknown_domain_has_no_limit() -> None:
    """A domain the configuration does not hold matches nothing."""
    assert match(BASIC, "foo_domain", [("key2", "x")]) is None


def test_unlimited_rule_matches_without_a_policy() -> None:
    """An unlimited descriptor matches, flagged unlimited, with nothing to count."""
    found = match(BASIC, "test-domain", [("key6", "foo")])
    assert found is not None and found.unlimited and found.policy is None


def test_readme_example_2_nested_and_top_level_rules() -> None:
    """README Example 2: 5 marketing messages per number, 100 messages per number."""
    config = config_of("""
        domain: messaging
        descriptors:
          - key: message_type
            value: marketing
            descriptors:
              - key: to_number
                rate_limit: {unit: day, requests_per_unit: 5}
          - key: to_number
            rate_limit: {unit: day, requests_per_unit: 100}
    """)
    one = match(config, "messaging", [("message_type", "marketing"), ("to_number", "2061111111")])
    two = match(config, "messaging", [("message_type", "marketing"), ("to_number", "2062222222")])
    assert limit_of(one) == limit_of(two) == 5
    assert one is not None and two is not None and one.counter_key != two.counter_key
    assert limit_of(match(config, "messaging", [("to_number", "2061111111")])) == 100
    assert match(config, "messaging", [("message_type", "transactional")]) is None


def test_readme_example_3_key_value_before_key_only() -> None:
    """README Example 3: the most specific node at a level wins."""
    config = config_of(upstream("example3"))
    assert limit_of(match(config, "edge_proxy_per_ip", [("remote_address", "50.0.0.1")])) == 10
    blocked = match(config, "edge_proxy_per_ip", [("remote_address", "50.0.0.5")])
    assert blocked is not None and blocked.blocked and blocked.policy is None


def test_readme_example_4_depth_must_match() -> None:
    """README Example 4: a rule applies only at the request's own depth."""
    shallow = config_of("""
        domain: example4
        descriptors:
          - key: key
            value: value
            rate_limit: {requests_per_unit: 300, unit: second}
    """)
    deep = config_of("""
        domain: example4
        descriptors:
          - key: key
            value: value
            descriptors:
              - key: subkey
                rate_limit: {requests_per_unit: 300, unit: second}
    """)
    entries = [("key", "value"), ("subkey", "subvalue")]
    assert match(shallow, "example4", entries) is None
    assert limit_of(match(deep, "example4", entries)) == 300


def test_readme_example_5_unlimited_and_limited_keys() -> None:
    """README Example 5: ldap unlimited, azure 100 per minute."""
    config = config_of("""
        domain: internal
        descriptors:
          - key: ldap
            rate_limit: {unlimited: true}
          - key: azure
            rate_limit: {unit: minute, requests_per_unit: 100}
    """)
    ldap = match(config, "internal", [("ldap", "x")])
    assert ldap is not None and ldap.unlimited
    assert limit_of(match(config, "internal", [("azure", "x")])) == 100


def test_readme_example_6_shadow_rule_is_flagged() -> None:
    """README Example 6: user-a's rule is in shadow mode, user-b's is enforced."""
    config = config_of(upstream("example6"))
    a = match(config, "example6", [("service", "auth-service"), ("user", "user-a")])
    b = match(config, "example6", [("service", "auth-service"), ("user", "user-b")])
    assert a is not None and a.shadow and limit_of(a) == 10
    assert b is not None and not b.shadow and limit_of(b) == 20


def test_readme_example_7_replaces_drops_the_replaced_rule() -> None:
    """README Example 7: with both descriptors only the replacing 10/s rule counts."""
    config = config_of(upstream("example7"))
    first = match(config, "example7", [("key_1", "value_1"), ("user", "bkthomps")])
    second = match(config, "example7", [("key_2", "value_2"), ("user", "bkthomps")])
    assert drop_replaced([first]) == [first]
    assert drop_replaced([second]) == [second]
    assert drop_replaced([first, second, None]) == [None, second, None]


def test_readme_example_9_wildcards() -> None:
    """README Example 9: trailing, middle and multiple * match as documented."""
    config = config_of("""
        domain: example9
        descriptors:
          - {key: key1, value: value*, rate_limit: {unit: minute, requests_per_unit: 20}}
          - {key: path, value: /api/*/action, rate_limit: {unit: minute, requests_per_unit: 21}}
          - key: route
            value: /api/*/resource/*/action
            rate_limit: {unit: minute, requests_per_unit: 22}
    """)
    for value in ("value1", "valueXYZ", "value"):
        assert limit_of(match(config, "example9", [("key1", value)])) == 20
    assert match(config, "example9", [("key1", "valu")]) is None
    assert limit_of(match(config, "example9", [("path", "/api/user-id/action")])) == 21
    assert match(config, "example9", [("path", "/api/123/other")]) is None
    assert limit_of(match(config, "example9", [("route", "/api/v1/resource/123/action")])) == 22
    assert match(config, "example9", [("route", "/api/v1/resource/action")]) is None


def test_exact_value_before_wildcard_before_key_only() -> None:
    """At one level an exact value beats a wildcard, which beats a key-only node."""
    config = config_of("""
        domain: d
        descriptors:
          - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}
          - {key: k, value: ab*, rate_limit: {unit: second, requests_per_unit: 2}}
          - {key: k, value: abc, rate_limit: {unit: second, requests_per_unit: 3}}
    """)
    assert [limit_of(match(config, "d", [("k", v)])) for v in ("zz", "abz", "abc")] == [1, 2, 3]


def test_a_chosen_node_is_never_given_up_for_a_less_specific_one() -> None:
    """Having matched key+value, a miss below it is no limit (upstream never backtracks)."""
    config = config_of("""
        domain: d
        descriptors:
          - key: a
            value: x
            descriptors: [{key: b, value: only}]
          - key: a
            descriptors: [{key: b, rate_limit: {unit: second, requests_per_unit: 1}}]
    """)
    assert match(config, "d", [("a", "x"), ("b", "other")]) is None
    assert limit_of(match(config, "d", [("a", "y"), ("b", "other")])) == 1


def test_key_only_counts_each_value_apart_and_key_value_shares() -> None:
    """A key-only node's counter is per value; a key+value node's is one for all."""
    config = load_directory(EXAMPLES)
    ip1 = match(config, "storefront", [("remote_address", "10.0.0.1")])
    ip2 = match(config, "storefront", [("remote_address", "10.0.0.2")])
    assert ip1 is not None and ip2 is not None and ip1.counter_key != ip2.counter_key
    assert ip1.counter_key == "rls:storefront|remote_address=10.0.0.1"
    one = match(config, "storefront", [("path", "/checkout"), ("user_id", "u1")])
    two = match(config, "storefront", [("path", "/checkout"), ("user_id", "u1")])
    assert one is not None and two is not None and one.counter_key == two.counter_key
    assert one.counter_key == "rls:storefront|path=/checkout|user_id=u1"


def test_share_threshold_counts_wildcard_matches_together() -> None:
    """With share_threshold every value of a wildcard shares one counter; without, not."""
    config = config_of("""
        domain: example11
        descriptors:
          - key: files
            value: files/*
            share_threshold: true
            rate_limit: {unit: hour, requests_per_unit: 10}
          - key: files_no_share
            value: files_no_share/*
            rate_limit: {unit: hour, requests_per_unit: 10}
    """)
    a, b = (match(config, "example11", [("files", f"files/{n}")]) for n in ("a.pdf", "b.csv"))
    assert a is not None and b is not None and a.counter_key == b.counter_key
    assert a.counter_key == "rls:example11|files=files/*"
    c, d = (
        match(config, "example11", [("files_no_share", f"files_no_share/{n}")])
        for n in ("a.pdf", "b.csv")
    )
    assert c is not None and d is not None and c.counter_key != d.counter_key


def test_counter_keys_cannot_collide_through_separators() -> None:
    """Separators inside keys or values are encoded, so distinct descriptors never meet."""
    assert counter_key("d", [("a", "b|c=d")]) != counter_key("d", [("a", "b"), ("c", "d")])
    assert counter_key("d:x", [("a", "b")]) != counter_key("d", [("x|a", "b")])
    assert counter_key("d", [("a", "b=c")]) != counter_key("d", [("a=b", "c")])


def test_long_counter_keys_are_hashed_stably() -> None:
    """Keys past the bound become a SHA-256 of fixed length, the same every time."""
    long_value = "/search?q=" + "x" * 500
    key = counter_key("d", [("path", long_value)])
    assert key.startswith("rls#") and len(key) == 4 + 64 <= MAX_COUNTER_KEY
    assert key == counter_key("d", [("path", long_value)])
    assert key != counter_key("d", [("path", long_value + "y")])
    written = "rls:d|path=" + long_value.replace("?", "%3F").replace("=", "%3D")
    assert key == "rls#" + hashlib.sha256(written.encode()).hexdigest()


def test_extensions_reach_the_match() -> None:
    """The example's GCRA burst, shadow limit and replaces arrive in the match."""
    config = load_directory(EXAMPLES)
    search = match(config, "storefront", [("path", "/search"), ("user_id", "u1")])
    assert search is not None and search.policy is not None
    assert [(x.name, x.burst, x.shadow) for x in search.policy.limits] == [
        ("search_rate", 20, False),
        ("search_daily", 0, True),
    ]
    per_user = match(config, "storefront", [("user_id", "u1")])
    checkout = match(config, "storefront", [("path", "/checkout"), ("user_id", "u1")])
    assert drop_replaced([per_user, checkout]) == [None, checkout]
    upload = match(config, "storefront", [("path", "/upload/cat.png")])
    assert upload is not None and upload.shadow and upload.name == "uploads"
