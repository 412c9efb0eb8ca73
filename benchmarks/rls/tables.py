"""The rate limit part in the report: its tables, and its findings for FAILED (kept
beside the part, as :mod:`benchmarks.policies.tables` is)."""

from __future__ import annotations

from benchmarks.results import RlsPart, RlsRow

__all__ = ["rls_problems", "rls_section"]

_DECISIONS = {
    "http_decide_1": "HTTP `GET /decide`, client of 1 limit",
    "http_decide_3": "HTTP `GET /decide`, client of 3 limits",
    "grpc_1": "gRPC, 1 descriptor",
    "grpc_3": "gRPC, 3 descriptors",
    "peer_grpc_1": "peer gRPC, 1 descriptor",
    "peer_grpc_3": "peer gRPC, 3 descriptors",
}
_ENVOYS = {"off": "filter off", "ours": "filter on, ours", "peer": "filter on, peer"}
_RATIOS = {
    "grpc_1_vs_http": "gRPC 1 descriptor / `/decide` 1 limit",
    "grpc_3_vs_http": "gRPC 3 descriptors / `/decide` 3 limits",
    "grpc_3_vs_grpc_1": "gRPC 3 descriptors / 1 descriptor",
    "ours_grpc_1_vs_peer": "gRPC 1 descriptor: our replica / the peer",
    "ours_grpc_3_vs_peer": "gRPC 3 descriptors: our replica / the peer",
    "ours_one_vs_off": "Envoy, one client: filter on (ours) / off (target >= 0.5)",
    "ours_ips_vs_off": "Envoy, many IPs: filter on (ours) / off (target >= 0.3)",
    "peer_one_vs_off": "Envoy, one client: filter on (peer) / off",
    "peer_ips_vs_off": "Envoy, many IPs: filter on (peer) / off",
    "ours_one_vs_peer": "Envoy, one client: ours / peer (target >= 1.0)",
    "ours_ips_vs_peer": "Envoy, many IPs: ours / peer (target >= 1.0)",
}


def rls_problems(part: RlsPart | None) -> list[str]:
    """Every finding against our service, labelled."""
    return [f"rls {p}" for p in part["problems"]] if part else []


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _check(row: RlsRow) -> str:
    return "problem: " + "; ".join(row["problems"][:3]) if row["problems"] else "ok"


def rls_section(part: RlsPart | None) -> list[str]:
    """The report's section: ratios first, then each load's row, then the floods."""
    if not part:
        return []
    out = [
        "## Rate limit service: gRPC, Envoy, and envoyproxy/ratelimit",
        "",
        f"Rules: `{part['config']}` (upstream's format), read by both services. "
        f"{part['rounds']} rounds of {part['seconds_per_run']} s per load after a warm-up, "
        f"loads alternating in order; {part['connections']} connections (wrk) or callers "
        f"(ghz, 2 HTTP/2 connections); many IPs: {part['ips']:,} in `X-Forwarded-For`. "
        f"gRPC load generator: {part['generator']}. Peer: "
        + (
            "ran, " + part["peer"]["reason"]
            if part["peer"]["ran"]
            else "skipped: " + part["peer"]["reason"]
        )
        + ". Ratios: median of each round's ratio of two loads of that round (each round's "
        "in brackets).",
        "",
        "| ratio | median | rounds |",
        "|---|---:|---|",
    ]
    for name, label in _RATIOS.items():
        if name in part["ratios"]:
            rounds = ", ".join(f"{r:.2f}" for r in part["round_ratios"][name])
            out.append(f"| {label} | **{part['ratios'][name]:.2f}** | {rounds} |")
    out += [
        "",
        "Decisions per replica: one replica (its Sanic workers) loaded directly; the peer "
        "is one Go process on Redis. Cores: CPU seconds per second of the server (the "
        "replica's process tree, or the peer without Redis) and of the load generator.",
        "",
        "| load | /s | p50 ms | p99 ms | server cores | generator cores | load | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, label in _DECISIONS.items():
        row = part["decisions"].get(name)
        if row:
            out.append(
                f"| {label} | {row['per_second']:.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row.get('server_cores', 0):.2f} | "
                f"{row.get('generator_cores', 0):.2f} | {row['load_average']:.2f} | {_check(row)} |"
            )
    out += [
        "",
        "Through Envoy (wrk, 127.0.0.1): Envoy's counters summed over the rounds (ok, "
        "over_limit, error, failure_mode_allowed: let through unasked, no answer within "
        "the 20 ms timeout) and the RLS call's p50/p99 from cluster `ratelimit`'s "
        "`upstream_rq_time` (whole ms; 0: under 1 ms). over_limit in these runs, where "
        "no limit is near: requests our service could not decide by the call's deadline "
        "(Envoy's timeout less 2 ms), which it denies as contended (429). Keys: distinct "
        "IPs sent over all the runs (about: wrk's two threads start half the list apart "
        "and each goes on where it stopped in the last run, every request its own IP "
        "until all were sent), and "
        "distinct keys the service stored (ours read back from the cluster, the peer's "
        "counted in Redis). wrk cores: the load generator's CPU seconds per second.",
        "",
        "| Envoy | clients | requests/s | p50 ms | p99 ms | ok | over_limit | error "
        "| failure_mode_allowed | RLS p50 / p99 ms | keys | wrk cores | load | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for shape, clients in (("one", "one"), ("ips", f"{part['ips']:,} IPs")):
        for role, label in _ENVOYS.items():
            row = part["envoy"].get(f"{role}_{shape}")
            if not row:
                continue
            counters = row.get("envoy", {})
            keys = "-"
            if "keys_sent" in row:
                stored = row.get("keys_stored")
                keys = f"~{row.get('keys_sent_in_all', row['keys_sent']):,} sent" + (
                    f", {stored:,} stored" if stored is not None else ""
                )
            rls = (
                "-"
                if role == "off"
                else f"{_ms(row.get('rls_p50_ms'))} / {_ms(row.get('rls_p99_ms'))}"
            )
            out.append(
                f"| {label} | {clients} | {row['per_second']:.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {counters.get('ok', 0)} | "
                f"{counters.get('over_limit', 0)} | {counters.get('error', 0)} | "
                f"{counters.get('failure_mode_allowed', 0)} | {rls} | {keys} | "
                f"{row.get('generator_cores', 0):.2f} | {row['load_average']:.2f} | "
                f"{_check(row)} |"
            )
    floods = part["floods"]
    if floods:
        out += [
            "",
            "Floods: 1,500 requests from 300 connections (aiohttp) through each service's "
            "Envoy on one fresh key limited to 100 per hour, with Envoy's default timeout "
            "(20 ms) and with 1 s. Admitted: requests that reached the upstream (exactly "
            "100 is exact); answered OK: the service's admissions as Envoy saw them (fewer "
            "than it counted when Envoy gave up on an answer); let through: Envoy's "
            "failure_mode_allowed. One figure per flood.",
            "",
            "| service | Envoy timeout | admitted | answered OK | over_limit "
            "| let through unasked | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for role, runs in floods.items():
            service, timeout = (
                ("ours" if role.startswith("ours") else "peer"),
                ("1 s" if role.endswith("_1s") else "20 ms"),
            )
            cells = [
                ", ".join(str(f["admitted"]) for f in runs),
                ", ".join(str(f["envoy"].get("ok", 0)) for f in runs),
                ", ".join(str(f["envoy"].get("over_limit", 0)) for f in runs),
                ", ".join(str(f["envoy"].get("failure_mode_allowed", 0)) for f in runs),
                ", ".join(f"{f['seconds']:.2f}" for f in runs),
            ]
            out.append(f"| {service} | {timeout} | " + " | ".join(cells) + " |")
    out.append("")
    return out
