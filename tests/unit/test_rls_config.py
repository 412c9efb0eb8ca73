"""The rate limit service's configuration: envoyproxy/ratelimit's files accepted unchanged,
what its loader refuses refused here with the file and path, units as upstream's
dividers, and this service's ``x_`` extensions resolved into limiter policies."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from limiter.policy import Algorithm, Limit, Policy
from limiter.rule import Alignment
from rls.check import main
from rls.config import Config, Domain, Rule, load_directory, parse
from rls.errors import ConfigError
from rls.limits import UNIT_SECONDS
from tests.rls import REFUSED, upstream

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "rls" / "examples"
FIXED = Algorithm.FIXED_WINDOW


def load(text: str, file: str = "a.yaml") -> Domain:
    """One file's domain, from YAML written indented in a test."""
    return parse(textwrap.dedent(text), file)


def refused(text: str, file: str = "a.yaml") -> str:
    """The message of the error one file's YAML raises."""
    with pytest.raises(ConfigError) as info:
        load(text, file)
    return str(info.value)


def rule_at(domain: Domain, *pairs: tuple[str, str | None]) -> Rule:
    """The rule of the node reached by ``(key, value)`` pairs (value None: key-only)."""
    level = domain.descriptors
    node = None
    for key, value in pairs:
        node = level.any_value[key] if value is None else level.exact[(key, value)]
        level = node.children
    assert node is not None and node.rule is not None
    return node.rule


def one_limit(rule: Rule) -> Limit:
    """The one limit of a rule's policy."""
    assert rule.spec.policy is not None
    (limit,) = rule.spec.policy.limits
    return limit


# --- accepted unchanged: upstream's test configuration and README examples ---------------

BASIC = upstream("basic")


def test_upstream_basic_config_loads_into_clock_aligned_fixed_windows() -> None:
    """Upstream's basic test file loads; each plain rule is one clock-aligned fixed window."""
    domain = load(BASIC)
    assert domain.name == "test-domain"
    sub = one_limit(rule_at(domain, ("key1", "value1"), ("subkey1", None)))
    assert sub == Limit("per_second", FIXED, 5, 1, Alignment.CLOCK)
    assert one_limit(rule_at(domain, ("key2", "value2"))).limit == 30
    assert one_limit(rule_at(domain, ("key4", None))).name == "key4_rate_limit"
    assert rule_at(domain, ("key6", None)).spec.unlimited
    assert rule_at(domain, ("key7", None)).detailed_metric
    assert domain.descriptors.exact[("key2", "value3")].rule is None


def test_readme_example_1_two_values_of_one_key() -> None:
    """README Example 1: two values of "database", each 500 per second."""
    domain = load("""
        domain: mongo_cps
        descriptors:
          - key: database
            value: users
            rate_limit: {unit: second, requests_per_unit: 500}
          - key: database
            value: default
            rate_limit: {unit: second, requests_per_unit: 500}
    """)
    for value in ("users", "default"):
        assert one_limit(rule_at(domain, ("database", value))).limit == 500


def test_readme_example_3_zero_requests_blocks_a_value() -> None:
    """README Example 3: requests_per_unit 0 is a black list, not an error."""
    domain = load(upstream("example3"))
    blocked = rule_at(domain, ("remote_address", "50.0.0.5"))
    assert blocked.spec.blocked and blocked.spec.policy is None
    assert one_limit(rule_at(domain, ("remote_address", None))).limit == 10


def test_readme_example_6_shadow_mode_is_the_rules_flag() -> None:
    """README Example 6: shadow_mode marks the rule, its limits stay enforceable."""
    domain = load(upstream("example6"))
    assert rule_at(domain, ("service", None), ("user", "user-a")).shadow
    assert not rule_at(domain, ("service", None), ("user", "user-b")).shadow
    assert not one_limit(rule_at(domain, ("service", None), ("user", "user-a"))).shadow


def test_readme_example_7_names_and_replaces() -> None:
    """README Example 7: a rule's name and the names it replaces are kept."""
    domain = load(upstream("example7"))
    assert rule_at(domain, ("key_1", "value_1"), ("user", "bkthomps")).spec.name == "specific_limit"
    replacing = rule_at(domain, ("key_2", "value_2"), ("user", "bkthomps"))
    assert replacing.spec.replaces == ("specific_limit",)
    assert one_limit(replacing).name == "per_second"


def test_upstream_flags_metadata_and_case_insensitive_units_are_accepted() -> None:
    """quota_mode, value_to_metric, metadata and an upper-case unit load as upstream's do."""
    domain = load("""
        domain: d
        descriptors:
          - key: k
            quota_mode: true
            value_to_metric: true
            metadata: {team: {name: edge}}
            rate_limit: {unit: HOUR, requests_per_unit: 3}
    """)
    node = domain.descriptors.any_value["k"]
    assert node.value_to_metric and node.metadata == {"team": {"name": "edge"}}
    assert node.rule is not None and node.rule.quota_mode
    assert one_limit(node.rule) == Limit("per_hour", FIXED, 3, 3600)


def test_values_are_the_text_written() -> None:
    """A value that YAML would read as a number or boolean matches its text, as in Go."""
    domain = load("""
        domain: d
        descriptors:
          - {key: code, value: 1.50, rate_limit: {unit: second, requests_per_unit: 1}}
          - {key: flag, value: true, rate_limit: {unit: second, requests_per_unit: 1}}
    """)
    assert ("code", "1.50") in domain.descriptors.exact
    assert ("flag", "true") in domain.descriptors.exact


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [
        ("second", 1),
        ("minute", 60),
        ("hour", 3600),
        ("day", 86400),
        ("week", 604800),
        ("month", 2592000),
        ("year", 31536000),
    ],
)
def test_units_are_upstreams_dividers(unit: str, seconds: int) -> None:
    """Each unit's window is upstream's UnitToDivider (a month 30 days, a year 365)."""
    assert UNIT_SECONDS[unit] == seconds
    domain = load(f"""
        domain: d
        descriptors:
          - key: k
            rate_limit: {{unit: {unit}, requests_per_unit: 7}}
    """)
    assert one_limit(rule_at(domain, ("k", None))) == Limit(f"per_{unit}", FIXED, 7, seconds)


# --- refused, as upstream refuses, each naming the file and path ---------------------------


@pytest.mark.parametrize("case", sorted(REFUSED.glob("*.yaml")), ids=lambda p: p.stem)
def test_upstreams_refusals_name_the_file_and_path(case: Path) -> None:
    """Every configuration upstream refuses is refused, the error naming file and path."""
    text = case.read_text()
    expected = text.splitlines()[1].removeprefix("# expect: ")
    assert refused(text).startswith(expected)


def test_nested_errors_carry_the_full_path() -> None:
    """An error deep in the tree names every list index and key on the way to it."""
    message = refused(
        """
        domain: d
        descriptors:
          - key: a
          - key: b
            descriptors:
              - key: c
                rate_limit: {unit: fortnight, requests_per_unit: 1}
        """,
        "config/a.yaml",
    )
    assert message == (
        'config/a.yaml: descriptors[1].descriptors[0].rate_limit.unit: unknown unit "fortnight"'
    )


def test_a_domain_in_two_files_is_refused(tmp_path: Path) -> None:
    """Two files of one domain are refused (upstream's default), naming both files."""
    (tmp_path / "a.yaml").write_text("domain: d\n")
    (tmp_path / "b.yml").write_text("domain: d\n")
    with pytest.raises(ConfigError) as info:
        load_directory(tmp_path)
    assert str(info.value) == f'{tmp_path}/b.yml: domain: duplicate domain "d" (already in ' + (
        f"{tmp_path}/a.yaml)"
    )


def test_a_directory_loads_yaml_and_yml_files_only(tmp_path: Path) -> None:
    """Every *.yaml and *.yml file of a directory is a domain; other files are left."""
    (tmp_path / "a.yaml").write_text("domain: one\n")
    (tmp_path / "b.yml").write_text("domain: two\n")
    (tmp_path / "notes.txt").write_text("domain: [not yaml config\n")
    assert sorted(load_directory(tmp_path).domains) == ["one", "two"]


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """A directory that is not there is reported as a ConfigError naming it."""
    with pytest.raises(ConfigError, match="not a directory"):
        load_directory(tmp_path / "absent")


# --- extensions ------------------------------------------------------------------------------


def policy_of(rate_limit: str) -> Policy:
    """The policy of a one-descriptor domain whose rate_limit block is given inline."""
    rule = rule_at(
        load(f"domain: d\ndescriptors:\n  - key: k\n    rate_limit: {rate_limit}"), ("k", None)
    )
    assert rule.spec.policy is not None
    return rule.spec.policy


def test_window_in_seconds_extension() -> None:
    """x_window_seconds gives any window, and an unnamed limit is named after it."""
    policy = policy_of("{x_window_seconds: 90, requests_per_unit: 4}")
    assert policy.limits == (Limit("per_90s", FIXED, 4, 90, Alignment.CLOCK),)


def test_algorithm_and_burst_extensions() -> None:
    """x_algorithm picks the rule; x_burst gives a GCRA its burst; neither aligns."""
    sliding = policy_of("{unit: minute, requests_per_unit: 60, x_algorithm: sliding_window}")
    assert sliding.limits == (Limit("per_minute", Algorithm.SLIDING_WINDOW, 60, 60),)
    gcra = policy_of(
        "{name: api, unit: second, requests_per_unit: 5, x_algorithm: gcra, x_burst: 20}"
    )
    assert gcra.limits == (Limit("api", Algorithm.GCRA, 5, 1, burst=20),)


def test_several_limits_extension() -> None:
    """x_limits puts several named limits, shadow ones included, in one policy."""
    policy = policy_of("""
      name: search
      x_limits:
        - {name: rate, algorithm: gcra, requests_per_unit: 5, unit: second, burst: 20}
        - {name: daily, limit: 5000, window_seconds: 86400, shadow: true}
    """)
    assert policy.limits == (
        Limit("rate", Algorithm.GCRA, 5, 1, burst=20),
        Limit("daily", FIXED, 5000, 86400, Alignment.CLOCK, shadow=True),
    )


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [
        ("{unit: day, x_window_seconds: 5, requests_per_unit: 1}", "x_window_seconds: give either"),
        ("{x_window_seconds: 0, requests_per_unit: 1}", "x_window_seconds: a window is at least"),
        (
            "{unit: day, requests_per_unit: 1, x_algorithm: leaky}",
            'x_algorithm: unknown algorithm "leaky"',
        ),
        ("{unit: day, requests_per_unit: 1, x_burst: 3}", "x_burst: belongs to x_algorithm: gcra"),
        ("{unlimited: true, x_algorithm: gcra}", "x_algorithm: has no meaning on an unlimited"),
        ("{unit: day, x_limits: [{name: a, limit: 1, unit: day}]}", "unit: belongs inside each"),
        ("{x_limits: []}", "x_limits: holds 1 to 8 limits, got 0"),
        ("{x_limits: [{limit: 1, unit: day}]}", 'x_limits[0].name: name "" is not'),
        ("{x_limits: [{name: a, unit: day}]}", "x_limits[0]: give exactly one of limit"),
        ("{x_limits: [{name: a, limit: 0, unit: day}]}", "x_limits[0].limit: at least 1"),
        ("{x_limits: [{name: a, limit: 1, unit: eon}]}", 'x_limits[0].unit: unknown unit "eon"'),
        (
            "{x_limits: [{name: a, limit: 1, unit: day, colour: red}]}",
            "x_limits[0].colour: unknown key",
        ),
        (
            "{x_limits: [{name: a, limit: 1, unit: day, burst: 2}]}",
            "x_limits[0]: a: burst belongs to gcra",
        ),
        (
            "{x_limits: [{name: a, limit: 1, unit: day}, {name: a, limit: 2, unit: hour}]}",
            "x_limits: a policy's limit names must be unique",
        ),
        (
            "{x_limits: [{name: a, limit: 1, unit: day, shadow: true}]}",
            "x_limits: a policy needs at least one enforced",
        ),
    ],
)
def test_extension_errors_name_the_path(rate_limit: str, message: str) -> None:
    """Every misuse of an extension is refused at the key at fault."""
    text = f"domain: d\ndescriptors:\n  - key: k\n    rate_limit: {rate_limit}"
    assert message in refused(text)
    assert refused(text).startswith("a.yaml: descriptors[0].rate_limit")


# --- the example file and the operator's check -----------------------------------------------


def test_the_example_configuration_loads() -> None:
    """rls/examples/config.yaml loads, with each feature it shows."""
    config: Config = load_directory(EXAMPLES)
    domain = config.domains["storefront"]
    assert one_limit(rule_at(domain, ("remote_address", None))).window_seconds == 1
    assert rule_at(domain, ("remote_address", "203.0.113.10")).spec.unlimited
    per_user = one_limit(rule_at(domain, ("user_id", None)))
    assert per_user.algorithm is Algorithm.SLIDING_WINDOW
    search = rule_at(domain, ("path", "/search"), ("user_id", None)).spec.policy
    assert search is not None and search.limits[0].burst == 20 and search.limits[1].shadow
    assert rule_at(domain, ("path", "/checkout"), ("user_id", None)).spec.replaces == ("per_user",)
    assert domain.descriptors.wildcards[0].rule is not None
    assert domain.descriptors.wildcards[0].rule.shadow


def test_check_prints_rules_and_exits_0() -> None:
    """check DIR prints each domain's rules and succeeds on a valid configuration."""
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", str(EXAMPLES)], out, err) == 0
    assert "domain storefront" in out.getvalue()
    assert "per_user 600/60s sliding_window" in out.getvalue()
    assert err.getvalue() == ""


def test_check_prints_the_first_error_and_exits_1(tmp_path: Path) -> None:
    """check DIR prints the error with its file and path and exits 1."""
    (tmp_path / "a.yaml").write_text("domain: d\ndescriptors:\n  - value: v\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["check", str(tmp_path)], out, err) == 1
    assert err.getvalue() == f"error: {tmp_path}/a.yaml: descriptors[0]: descriptor has empty key\n"
    assert main(["lint"], out, err) == 2
