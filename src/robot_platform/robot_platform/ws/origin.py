"""Which Host names and browser Origins ws_agent answers (DNS rebinding and cross-site WebSockets).

DNS rebinding: a page on ``http://attacker.example:9090`` whose name later resolves to the robot talks
to the agent *same-origin* (its Origin equals the Host header it sends), so an Origin == Host rule
alone lets it read the stream. The agent therefore answers only requests whose Host header names one
of ``allowed_hosts``: by default the loopback names (``localhost``, ``127.0.0.1``, ``::1``), the bind
address when it is a specific one, and whatever site names the configuration adds (``allowed_hosts``
parameter; ``*`` turns the check off, on purpose only).

Origin of a WebSocket upgrade (cross-site WebSocket hijacking): allowed when absent (non-browser
clients can send anything anyway), when equal to the agent's own origin *on an allowed host*, when
listed exactly in ``allowed_origins``, or when that list has ``*``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BIND = ("", "0.0.0.0", "::")  # noqa: S104 (names to recognise, not to bind)


def host_name(host_header: str) -> str:
    """The name part of a Host header (``name``, ``name:port``, ``[v6]:port``), lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name
    return host


class HostPolicy:
    """Host header allow-list (see the module docstring)."""

    def __init__(self, allowed_hosts: list[str], bind_host: str = "") -> None:
        self.any = "*" in allowed_hosts
        names = {*LOOPBACK_HOSTS, *(host_name(h) for h in allowed_hosts if h and h != "*")}
        if bind_host not in WILDCARD_BIND:
            names.add(host_name(bind_host))
        self.names = frozenset(n for n in names if n)

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        return bool(host_header) and host_name(str(host_header)) in self.names


class OriginPolicy:
    """Browser Origin check of WebSocket upgrades (see the module docstring)."""

    def __init__(self, allowed: list[str], hosts: HostPolicy | None = None) -> None:
        self.any = "*" in allowed
        self.allowed = {a.rstrip("/").lower() for a in allowed if a and a != "*"}
        self.hosts = hosts or HostPolicy([])

    def check(self, origin: str | None, host: str | None) -> bool:
        if not origin or self.any:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed:
            return True
        netloc = urlsplit(origin).netloc
        return bool(host) and netloc == str(host).lower() and self.hosts.allows(netloc)
