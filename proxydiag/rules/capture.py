"""PD9xx: about the capture itself."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from proxydiag.rules.base import Context, Hit, Rule


class CaptureTruncated(Rule):
    code, slug, severity = "PD901", "capture-truncated", "info"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        cut = [c for c in ctx.connections if any(side.get("snapped_bytes") for side in c.reassembly.values())]
        if cut:
            yield Hit(
                f"The snap length cut {len(cut)} connection opening(s) short: capture with `tcpdump -s 0`.",
                cut, {"connections": len(cut)}, group="snaplen",
            )


class MidStream(Rule):
    code, slug, severity = "PD902", "mid-stream", "info"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        partial = [c for c in ctx.connections if c.mid_stream]
        if partial:
            yield Hit(
                f"{len(partial)} connection(s) started before the capture: their first bytes, and so their PROXY "
                "headers, are unknown. Start the capture before the connections.",
                partial, {"connections": len(partial)}, group="mid-stream",
            )


class NoMailTraffic(Rule):
    code, slug, severity = "PD903", "no-mail-traffic", "warning"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if not ctx.inputs or (any(item.error for item in ctx.inputs) and not ctx.connections):
            return  # no capture given (a configuration check), or none could be read
        mail = [c for c in ctx.connections if c.protocol or c.tcp.dst_port in ctx.options.services or c.header]
        if mail:
            return
        busiest = Counter(c.tcp.dst_port for c in ctx.connections).most_common(5)
        ports = ", ".join(f"{port} ({count})" for port, count in busiest) or "none"
        yield Hit(
            f"No mail traffic found (no mail port, no mail greeting, no PROXY header). Busiest server ports: {ports}. "
            "Capture on the interface facing the mail server with a filter such as 'tcp port 25 or tcp port 993', "
            "or pass --ports.",
            evidence={"busiest_ports": dict(busiest)}, group="no-mail",
        )


class CaptureDamaged(Rule):
    code, slug, severity = "PD904", "capture-damaged", "warning"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        for item in ctx.inputs:
            if item.damaged:
                yield Hit(f"{item.path}: {item.damaged}; the analysis covers what came before.",
                          evidence={"input": item.path, "problem": item.damaged}, group=item.path)


class FlowTableBounded(Rule):
    code, slug, severity = "PD905", "flow-table-bounded", "warning"

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
