"""PD9xx: about the capture itself."""

from __future__ import annotations

from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.rules.base import Context, Hit, Rule


class CaptureTruncated(Rule):
    code = "PD901"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if any(side.get("snapped_bytes") for side in conn.reassembly.values()):
            cut = ctx.tally.snapped
            yield Hit(
                f"The snap length cut {cut} connection opening(s) short: capture with `tcpdump -s 0`.",
                [conn], {"connections": cut}, group="snaplen",
            )


class MidStream(Rule):
    code = "PD902"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream:
            partial = ctx.tally.mid_stream
            yield Hit(
                f"{partial} connection(s) started before the capture: their first bytes, and so their PROXY "
                "headers, are unknown. Start the capture before the connections.",
                [conn], {"connections": partial}, group="mid-stream",
            )


class NoMailTraffic(Rule):
    code = "PD903"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        tally = ctx.tally
        if not ctx.inputs or (any(item.error for item in ctx.inputs) and not tally.connections):
            return  # no capture given (a configuration check), or none could be read
        if tally.mail:
            return
        busiest = tally.ports.most_common(5)
        ports = ", ".join(f"{port} ({count})" for port, count in busiest) or "none"
        yield Hit(
            f"No mail traffic found (no mail port, no mail greeting, no PROXY header). Busiest server ports: {ports}. "
            "Capture on the interface facing the mail server with a filter such as 'tcp port 25 or tcp port 993', "
            "or pass --ports.",
            evidence={"busiest_ports": dict(busiest)}, group="no-mail",
        )


class CaptureDamaged(Rule):
    code = "PD904"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        for item in ctx.inputs:
            if item.damaged:
                yield Hit(f"{item.path}: {item.damaged}; the analysis covers what came before.",
                          evidence={"input": item.path, "problem": item.damaged}, group=item.path)


class FlowTableBounded(Rule):
    code = "PD905"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        bounds = ctx.flow_table
        if not bounds.hit:
            return
        parts = [
            f"{bounds.evicted_half_open} half-open flows (SYNs never answered: a flood or a scan) dropped unseen"
            if bounds.evicted_half_open else "",
            f"{bounds.evicted_idle} idle flows judged before their end" if bounds.evicted_idle else "",
            f"{bounds.evicted_by_cap} flows let go because the table was full" if bounds.evicted_by_cap else "",
        ]
        yield Hit(
            "The flow table hit its bounds: " + "; ".join(part for part in parts if part) + f" ({bounds.dropped} flows "
            "never described). The findings cover the rest; memory stayed bounded.",
            evidence=bounds.to_dict(), group="flow-table",
        )


RULES = [CaptureTruncated(), MidStream(), NoMailTraffic(), CaptureDamaged(), FlowTableBounded()]
