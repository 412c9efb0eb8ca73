"""Bodies of the management routes: the list of limits and the single form."""

from __future__ import annotations

from typing import Any

import pytest

from api.errors import InvalidField
from api.settings import Settings
from api.validation import validate_create, validate_update
from limiter import Algorithm, Alignment, Limit, Policy
from registry import ClientRecord

SETTINGS = Settings()
GCRA = {"name": "burst", "algorithm": "gcra", "limit": 2, "window_seconds": 60, "burst": 1}
DAILY = {"name": "daily", "algorithm": "fixed_window", "limit": 5, "window_seconds": 86400}
TRIAL = {
    "name": "trial",
    "algorithm": "sliding_window",
    "limit": 1,
    "window_seconds": 60,
    "shadow": True,
}


def _refused(body: dict[str, Any], *, update: bool = False) -> str:
    """The field a body's 422 names."""
    with pytest.raises(InvalidField) as refused:
        if update:
            validate_update(body, SETTINGS)
        else:
            validate_create({"name": "n", **body}, SETTINGS)
    return refused.value.field


def test_a_list_of_limits_becomes_the_policy_in_order() -> None:
    """limits gives a policy of those limits, in order, with each algorithm's fields and
    the settings' default alignment for a fixed window that names none."""
    new = validate_create({"name": "n", "limits": [GCRA, DAILY, TRIAL]}, SETTINGS)
    assert new.policy == Policy(
        (
            Limit("burst", Algorithm.GCRA, 2, 60, burst=1),
            Limit("daily", Algorithm.FIXED_WINDOW, 5, 86400, Alignment.FIRST_REQUEST),
            Limit("trial", Algorithm.SLIDING_WINDOW, 1, 60, shadow=True),
        )
    )


def test_the_single_form_is_a_list_of_one() -> None:
    """limit, window_seconds and window_alignment (or their defaults) give one fixed
    window named default."""
    new = validate_create({"name": "n", "limit": 3, "window_seconds": 10}, SETTINGS)
    assert new.policy == Policy.single(3, 10, Alignment.FIRST_REQUEST)
    assert validate_create({"name": "n"}, SETTINGS).policy == Policy.single(
        100, 60, Alignment.FIRST_REQUEST
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": [DAILY], "limit": 5}, "limits"),
        ({"limits": []}, "limits"),
        ({"limits": [DAILY] * 9}, "limits"),
        ({"limits": DAILY}, "limits"),
        ({"limits": [DAILY, "x"]}, "limits[1]"),
        ({"limits": [{**DAILY, "colour": "red"}]}, "limits[0].colour"),
        ({"limits": [{"name": "a", "algorithm": "gcra", "limit": 1}]}, "limits[0].window_seconds"),
        ({"limits": [{**DAILY, "name": "Daily"}]}, "limits[0].name"),
        ({"limits": [{**DAILY, "name": "a" * 33}]}, "limits[0].name"),
        ({"limits": [{**DAILY, "algorithm": "leaky_bucket"}]}, "limits[0].algorithm"),
        ({"limits": [{**DAILY, "limit": 0}]}, "limits[0].limit"),
        ({"limits": [{**DAILY, "limit": SETTINGS.max_limit + 1}]}, "limits[0].limit"),
        ({"limits": [{**DAILY, "window_seconds": True}]}, "limits[0].window_seconds"),
        ({"limits": [{**DAILY, "window_alignment": "noon"}]}, "limits[0].window_alignment"),
        ({"limits": [{**GCRA, "window_alignment": "clock"}]}, "limits[0].window_alignment"),
        ({"limits": [GCRA, {**DAILY, "burst": 1}]}, "limits[1].burst"),
        ({"limits": [{**GCRA, "burst": -1}]}, "limits[0].burst"),
        ({"limits": [{**GCRA, "burst": 1.5}]}, "limits[0].burst"),
        ({"limits": [{**DAILY, "shadow": "yes"}]}, "limits[0].shadow"),
        ({"limits": [DAILY, {**GCRA, "name": "daily"}]}, "limits[1].name"),
        ({"limits": [TRIAL]}, "limits"),
    ],
)
def test_a_bad_list_is_a_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    """Each malformed list, item or field of an item is refused, naming it as limits[i].x."""
    assert _refused(body) == field
    assert _refused(body, update=True) == field


def test_the_limit_constructors_own_bounds_name_the_field() -> None:
    """Under settings that allow more, the rules' arithmetic bounds (which the Limit
    constructor checks) are 422s naming the burst of a gcra limit, the limit of a sliding
    one."""
    wide = Settings(max_limit=2**61, max_cost=1000)
    huge_burst = {**GCRA, "window_seconds": 86400, "burst": 2**60}
    with pytest.raises(InvalidField) as refused:
        validate_create({"name": "n", "limits": [huge_burst]}, wide)
    assert refused.value.field == "limits[0].burst"
    huge_sliding = {**TRIAL, "shadow": False, "window_seconds": 86400, "limit": 2**60}
    with pytest.raises(InvalidField) as refused:
        validate_create({"name": "n", "limits": [huge_sliding]}, wide)
    assert refused.value.field == "limits[0].limit"


SINGLE = ClientRecord("i", "n", "t", Policy.single(5, 60, Alignment.CLOCK))
NAMED = ClientRecord(
    "i", "n", "t", Policy((Limit("hourly", Algorithm.FIXED_WINDOW, 5, 3600, Alignment.CLOCK),))
)
SEVERAL = ClientRecord(
    "i", "n", "t", validate_create({"name": "n", "limits": [GCRA, DAILY]}, SETTINGS).policy
)


def test_a_patch_of_limits_replaces_the_whole_list() -> None:
    """PATCH limits gives the client exactly the new list, whatever it had."""
    change = validate_update({"limits": [DAILY]}, SETTINGS)
    assert change.apply(SEVERAL) == change.apply(SINGLE) == change.limits
    assert change.limits is not None and [limit.name for limit in change.limits.limits] == ["daily"]


def test_a_single_form_patch_changes_the_one_fixed_window() -> None:
    """limit, window_seconds or window_alignment change the one fixed-window limit of a
    client, keeping its name and what the patch does not say."""
    change = validate_update({"limit": 9, "window_alignment": "first_request"}, SETTINGS)
    assert change.apply(SINGLE) == Policy.single(9, 60, Alignment.FIRST_REQUEST)
    (limit,) = change.apply(NAMED).limits
    assert (limit.name, limit.limit, limit.window_seconds) == ("hourly", 9, 3600)


def test_a_single_form_patch_of_a_client_of_several_limits_is_a_422() -> None:
    """On a client of several limits the single form is ambiguous: a 422 naming the field
    sent, saying to send limits."""
    change = validate_update({"window_seconds": 30}, SETTINGS)
    with pytest.raises(InvalidField) as refused:
        change.apply(SEVERAL)
    assert refused.value.field == "window_seconds"
    assert "send limits" in str(refused.value)
