"""The local stack runner: no duplicates, clear failures, nothing left behind."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import ROOT, Layout, MemberSettings, Part, Stack, StackError, poll_until, port_is_free
from tests.cluster import MEMBERS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int, avoid: range = range(0)) -> int:
    """The first of ``count`` consecutive ports that are all free now, none in ``avoid``
    (a stack uses its base port and the ones after it: a free base alone is not enough)."""
    while True:
        base = free_port()
        ports = range(base, base + count)
        if ports[-1] > 65535 or any(port in avoid for port in ports):
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in ports:
                    probe = held.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


@pytest.fixture
def scratch_stack(tmp_path: Path) -> Iterator[Stack]:
    """A one-off stack in a temporary run folder, stopped whatever the test did."""
    base = free_ports(MEMBERS)
    layout = dataclasses.replace(
        Layout.DEFAULT,
        member_port=base,
        # An ephemeral port + 12000 could pass 65535, which the metrics agent refuses.
        member_metrics_port=free_ports(MEMBERS, avoid=range(base, base + MEMBERS)),
    )
    stack = Stack(layout, tmp_path / "run", f"scratch-{os.getpid()}")
    yield stack
    stack.stop()


def test_starting_twice_starts_no_duplicates(cluster: Stack) -> None:
    """A second start of a running cluster keeps the same processes."""
    members = [cluster.member_name(i) for i in range(MEMBERS)]
    before = {name: pid for name, pid in cluster.running().items() if name in members}
    cluster.start_members(MEMBERS)
    assert {name: cluster.pid_of(name) for name in members} == before
    assert len(before) == MEMBERS


def test_a_taken_port_is_one_clear_error_and_leaves_nothing(scratch_stack: Stack) -> None:
    """A port held by a foreign process stops the start with its number; nothing runs after."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", scratch_stack.layout.member_port))
        squatter.listen()
        with pytest.raises(StackError, match=f"port {scratch_stack.layout.member_port}.*in use"):
            scratch_stack.start_members(1)
    assert scratch_stack.running() == {}


def test_a_member_that_dies_at_start_shows_its_log(scratch_stack: Stack, tmp_path: Path) -> None:
    """A member that exits during start-up (here: a broken config) is reported with its log."""
    broken = tmp_path / "broken.xml"
    broken.write_text("<hazelcast><network><port>not-a-port</port></network></hazelcast>")
    stack = Stack(
        scratch_stack.layout,
        scratch_stack.run_dir,
        scratch_stack.cluster_name,
        MemberSettings(config=broken),
    )
    with pytest.raises(StackError, match="member-1 exited during start-up") as error:
        stack.start_members(1, deadline_seconds=60)
    assert "com.hazelcast.config" in str(error.value)  # the log's tail is in the message
    assert scratch_stack.running() == {}


def test_a_member_that_never_joins_times_out_with_its_name(scratch_stack: Stack) -> None:
    """Waiting for a member that never joins ends at the deadline and names the missing one."""
    scratch_stack.start_members(1)
    # A second member that runs but belongs to another cluster, so it never joins this one.
    stranger = Stack(
        scratch_stack.layout, scratch_stack.run_dir, f"{scratch_stack.cluster_name}-other"
    )
    stranger.processes.spawn(stranger.member_part(1, 2))
    missing = scratch_stack.member_addresses(2)[1]
    with pytest.raises(StackError, match=f"not joined: {missing}"):
        scratch_stack.wait_for_members(2, deadline_seconds=8)
    assert set(scratch_stack.running()) == {"member-1", "member-2"}


# A parent that listens on a port, and a child that shares its socket and outlives it:
# the parent exits at SIGTERM; the child takes a second more, as a worker finishing up.
SLOW_CHILD = """
import os, signal, socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
if os.fork() == 0:
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.0), os._exit(0)))
    while True:
        time.sleep(1)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    server.accept()[0].close()
"""


def test_stop_returns_once_the_parts_children_have_let_go_of_its_port(
    scratch_stack: Stack,
) -> None:
    """A part's child that outlives it still holds its port: stop waits for the whole
    process group, so the part can be started again at once on the same port."""
    port = free_port()
    part = Part("slow-child", [sys.executable, "-c", SLOW_CHILD, str(port)], port)
    for _ in range(2):
        scratch_stack.start_parts([part], deadline_seconds=30)
        assert not port_is_free(port)
        assert scratch_stack.stop(["slow-child"]) == ["slow-child"]
        assert port_is_free(port)


def test_waiting_for_a_part_that_has_exited_waits_for_the_rest_of_its_group(
    scratch_stack: Stack,
) -> None:
    """wait_for_exit called once the part itself is gone (its child still finishing, as
    after a SIGTERM a replica handles itself) returns only when the child is gone too."""
    port = free_port()
    part = Part("slow-child", [sys.executable, "-c", SLOW_CHILD, str(port)], port)
    scratch_stack.start_parts([part], deadline_seconds=30)
    pid = scratch_stack.pid_of("slow-child")
    assert pid is not None
    os.killpg(os.getpgid(pid), signal.SIGTERM)
    poll_until(lambda: scratch_stack.pid_of("slow-child") is None, 10, "the part to exit")
    assert not port_is_free(port)  # the child still holds it, for about a second
    scratch_stack.wait_for_exit("slow-child", 10)
    assert port_is_free(port)


def test_cli_without_java_says_so_in_one_line(tmp_path: Path) -> None:
    """`python -m stack up` with no java on PATH: exit 1 and one line naming what to install."""
    result = subprocess.run(
        [sys.executable, "-m", "stack", "up"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: java is not installed: install OpenJDK 17 or later "
        "(apt-get install openjdk-17-jre-headless)"
    ]
