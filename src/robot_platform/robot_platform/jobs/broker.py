"""Render config/mosquitto/mosquitto.conf for a given port and secrets directory (tests, demo).

Mosquitto has no variables in its config, so the shipped file carries site-install paths and this helper
rewrites the named directives line by line: the file that tests and the demo run is the shipped one,
with only paths, the listener and the ``user`` changed.
"""

from __future__ import annotations

from pathlib import Path

from robot_platform.exceptions import ConfigError


def render_conf(template: str, overrides: dict[str, str]) -> str:
    """Replace each directive named in ``overrides`` (first word of a line) by ``<name> <value>``.

    Directives not present in the template are appended. Every override must be a single line.
    """
    for name, value in overrides.items():
        if "\n" in value or "\n" in name:
            raise ConfigError(name, value, "must be a single line")
    seen: set[str] = set()
    lines = []
    for line in template.splitlines():
        words = line.split(maxsplit=1)
        if words and words[0] in overrides:
            if words[0] not in seen:
                lines.append(f"{words[0]} {overrides[words[0]]}")
                seen.add(words[0])
            continue
        lines.append(line)
    lines += [f"{name} {value}" for name, value in overrides.items() if name not in seen]
    return "\n".join(lines) + "\n"


def site_overrides(port: int, secrets: Path, acl: Path, data_dir: Path, user: str = "") -> dict[str, str]:
    """Overrides for a broker on 127.0.0.1:<port> with certificates in ``secrets`` (certs.py layout)."""
    out = {
        "listener": f"{port} 127.0.0.1",
        "cafile": str(secrets / "ca.crt"),
        "certfile": str(secrets / "mosquitto.crt"),
        "keyfile": str(secrets / "mosquitto.key"),
        "acl_file": str(acl),
        "persistence_location": f"{data_dir}/",
    }
    if user:
        out["user"] = user  # when started as root: stay this user instead of dropping to `mosquitto`
    return out
