"""The X-RateLimit-Cost header as the guarded routes read it."""

from __future__ import annotations

import pytest
from sanic.compat import Header

from api.cost import COST_HEADER, GATEWAY_HEADER, request_cost
from api.errors import InvalidHeader

MAX_COST = 1000


def headers(*values: str) -> Header:
    return Header([(COST_HEADER, value) for value in values])


@pytest.mark.parametrize(
    ("values", "cost"),
    [((), 1), (("0",), 0), (("7",), 7), (("1000",), 1000), (("007",), 7), (("5", "5"), 5)],
)
def test_a_well_formed_cost_is_read(values: tuple[str, ...], cost: int) -> None:
    """Absent is 1; 0 to the bound in decimal digits, or the same value repeated, is read."""
    assert request_cost(headers(*values), MAX_COST) == cost


@pytest.mark.parametrize(
    "values",
    [
        ("",),
        ("-1",),
        ("+1",),
        ("1001",),
        ("1.0",),
        ("1e3",),
        ("0x10",),
        ("1_0",),
        ("1 0",),
        ("\u0663",),  # an Arabic-Indic three: int() would take it
        ("9" * 21,),
        ("3", "4"),
        ("3, 3",),
    ],
)
def test_a_malformed_cost_is_a_400_naming_the_header(values: tuple[str, ...]) -> None:
    """Anything but one plain decimal number from 0 to the bound is refused, and the
    error names the header (in its message and in X-RateLimit-Invalid)."""
    with pytest.raises(InvalidHeader) as refused:
        request_cost(headers(*values), MAX_COST)
    assert refused.value.status_code == 400
    assert refused.value.message.startswith(f"{COST_HEADER}:")
    assert refused.value.headers == {"X-RateLimit-Invalid": COST_HEADER}


def test_a_peek_through_the_gateway_is_refused_and_a_cost_is_not() -> None:
    """Behind the gateway (nginx sets X-RateLimit-Gateway) cost 0 is a 400, since the app
    would get the request uncounted; a cost of 1 or more passes as anywhere else."""
    peek = Header([(COST_HEADER, "0"), (GATEWAY_HEADER, "1")])
    with pytest.raises(InvalidHeader, match="gateway"):
        request_cost(peek, MAX_COST)
    assert request_cost(Header([(COST_HEADER, "3"), (GATEWAY_HEADER, "1")]), MAX_COST) == 3
    assert request_cost(Header([(GATEWAY_HEADER.lower(), "1")]), MAX_COST) == 1
