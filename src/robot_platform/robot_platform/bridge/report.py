"""Flatten the bridge's counters into the key/value list of its diagnostics report (pure logic).

Keys (values are numbers unless noted): link_state (text), sent, received, queued, dropped_outbox,
dropped_slow_consumer, connects, disconnects, connect_failures, duplicates, errors.<kind>,
out<topic>.{out,dropped_rate,codec_ms,errors[,overview]}, in.<subject>.{in,delivered,duplicates,codec_ms,errors},
mirror.<subject>.{in,delivered,duplicates,codec_ms,errors}.
"""

from __future__ import annotations

from typing import Any

LINK_KEYS = (
    "sent", "received", "queued", "dropped_outbox", "dropped_slow_consumer", "connects", "disconnects",
    "connect_failures",
)  # fmt: skip


def flat_values(snapshot: dict[str, Any], link: dict[str, Any]) -> dict[str, Any]:
    """One flat dict of everything worth reporting; ``snapshot`` as built by the node, ``link`` counters."""
    values: dict[str, Any] = {"link_state": link["state"]}
    values.update({k: link[k] for k in LINK_KEYS})
    groups = [("in", "in."), ("mirror", "mirror.")]
    values["duplicates"] = sum(st["duplicates"] for g, _ in groups for st in snapshot.get(g, {}).values())
    errors = dict(snapshot.get("errors", {}))
    for kind, n in snapshot.get("mirror_errors", {}).items():
        errors[kind] = errors.get(kind, 0) + n
    for kind, n in sorted(errors.items()):
        values[f"errors.{kind}"] = n
    for topic, st in snapshot.get("out", {}).items():
        for key in ("out", "dropped_rate", "codec_ms"):
            values[f"out{topic}.{key}"] = st[key]
        values[f"out{topic}.errors"] = sum(st["errors"].values())
        if "overview" in st:
            values[f"out{topic}.overview"] = st["overview"]
    for group, prefix in groups:
        for subject, st in snapshot.get(group, {}).items():
            for key in ("in", "delivered", "duplicates", "codec_ms"):
                values[f"{prefix}{subject}.{key}"] = st[key]
            values[f"{prefix}{subject}.errors"] = sum(st["errors"].values())
    return values
