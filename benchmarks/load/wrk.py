"""wrk, run and read in one place for the end-to-end benchmark and the load tests.

Every run carries a Lua script that counts what wrk's summary does not: each status,
answers marked ``X-RateLimit-Degraded`` (the cluster was unreachable), and ``contended``
429s (a busy key: ``Retry-After: 1`` and a "too busy" body), plus latency percentiles.
With ``rotate``, each request carries the next value of a list in one header (many
clients from one wrk run); the threads start evenly spaced along the list, so that a run
of no more requests than values sends each value at most once (as long as the threads
keep pace with each other).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SOCKET_ERROR_KINDS", "WRK", "WrkRun", "run_wrk"]

WRK = shutil.which("wrk")
SOCKET_ERROR_KINDS = ("connect", "read", "write", "timeout")

COUNTING_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
function init(args)
  counts = {}; contended = 0; degraded = 0
  if init_rotation then init_rotation() end
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if headers["X-RateLimit-Degraded"] then degraded = degraded + 1 end
  if status == 429 and headers["Retry-After"] == "1" and string.find(body, "busy") then
    contended = contended + 1
  end
end
function done(summary, latency, requests)
  local total = {}
  local c, d = 0, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
    c = c + t:get("contended")
    d = d + t:get("degraded")
  end
  for k, v in pairs(total) do io.write(string.format("status %d %d\\n", k, v)) end
  io.write(string.format("contended %d\\ndegraded %d\\n", c, d))
  for _, p in ipairs({50, 99, 99.9}) do
    io.write(string.format("latency_p%s_us %d\\n", p, latency:percentile(p)))
  end
end
"""

ROTATING_SCRIPT = """
function init_rotation()
  values = {}
  for line in io.lines(ROTATE_FILE) do table.insert(values, line) end
  sent = math.floor(((tid or 1) - 1) * #values / ROTATE_THREADS)
end
function request()
  sent = sent + 1
  return wrk.format(nil, nil, {[ROTATE_HEADER] = values[sent % #values + 1]})
end
"""


@dataclasses.dataclass
class WrkRun:
    """What one wrk run saw."""

    requests: int
    per_second: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    contended: int
    degraded: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    output: str

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.per_second:.0f}/s, statuses {self.statuses}, "
            f"socket errors {self.socket_errors}"
        )


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    *,
    headers: Mapping[str, str] | None = None,
    threads: int = 2,
    timeout: str = "10s",
    rotate: tuple[str, Sequence[str]] | None = None,
) -> WrkRun:
    """One wrk run against ``url``; raises when wrk itself fails. ``rotate``: a header
    name and the values its requests take in turn."""
    if WRK is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "count.lua"
        text = COUNTING_SCRIPT
        if rotate is not None:
            values = Path(folder) / "values.txt"
            values.write_text("".join(f"{value}\n" for value in rotate[1]))
            text += f"ROTATE_HEADER = {json.dumps(rotate[0])}\n"
            text += f"ROTATE_FILE = {json.dumps(str(values))}\n"
            text += f"ROTATE_THREADS = {threads}\n" + ROTATING_SCRIPT
        script.write_text(text)
        argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", timeout]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        done = subprocess.run(
            [*argv, "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout)


def parse(output: str) -> WrkRun:
    """Reads wrk's summary and the script's lines (socket errors appear only when any)."""
    requests = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not (requests and rate):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    counted = errors.groups() if errors else ("0",) * len(SOCKET_ERROR_KINDS)
    values = dict(re.findall(r"^(contended|degraded|latency_p[\d.]+_us) (\d+)$", output, re.M))
    return WrkRun(
        requests=int(requests.group(1)),
        per_second=float(rate.group(1)),
        statuses={int(k): int(v) for k, v in re.findall(r"^status (\d+) (\d+)$", output, re.M)},
        socket_errors=dict(zip(SOCKET_ERROR_KINDS, map(int, counted), strict=True)),
        contended=int(values.get("contended", 0)),
        degraded=int(values.get("degraded", 0)),
        p50_ms=int(values.get("latency_p50_us", 0)) / 1000,
        p99_ms=int(values.get("latency_p99_us", 0)) / 1000,
        p999_ms=int(values.get("latency_p99.9_us", 0)) / 1000,
        output=output,
    )
