"""Render config/mosquitto/mosquitto.conf for a given port and secrets directory (tests, demo, containers).

Mosquitto has no variables in its config, so the shipped file carries site-install paths and this helper
rewrites the named directives line by line: the file that tests and the demo run is the shipped one,
with only paths, the listener and the ``user`` changed. The containers' docker/mosquitto/mosquitto.conf is
rendered from it too (:func:`container_conf`; a unit test fails when the checked-in copy differs).

The client-id check (a certificate may use only its own client ids) is the rp_client_id_auth plugin built
by colcon from ``src/robot_platform_mosquitto_auth`` (:func:`client_id_plugin` finds it).
"""

from __future__ import annotations

import os
from pathlib import Path

from robot_platform.exceptions import ConfigError

PLUGIN_PACKAGE = "robot_platform_mosquitto_auth"
PLUGIN_FILE = "rp_client_id_auth.so"
PLUGIN_ENV = "RP_MOSQUITTO_AUTH_PLUGIN"  # an explicit path wins (a site install, a container)
# docker/mosquitto/mosquitto.conf = config/mosquitto/mosquitto.conf with these (container paths, the
# listener on every interface of the container network; compose publishes it on 127.0.0.1 by default).
CONTAINER_HEADER = (
    "# GENERATED from config/mosquitto/mosquitto.conf by\n"
    "# `python -m robot_platform.site_setup.mosquitto_config container`:\n"
    "# do not edit; change config/mosquitto/ and regenerate (test_config_files.py checks they match).\n"
)
CONTAINER_OVERRIDES = {
    "persistence_location": "/mosquitto/data/",
    "log_dest": "stdout",
    "listener": "8883",
    "cafile": "/run/secrets/ca.crt",
    "certfile": "/run/secrets/mosquitto.crt",
    "keyfile": "/run/secrets/mosquitto.key",
    "acl_file": "/mosquitto/config/acl",
    "plugin": f"/usr/lib/robot_platform/{PLUGIN_FILE}",
}


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


def client_id_plugin() -> Path:
    """Path of the built rp_client_id_auth plugin: ``$RP_MOSQUITTO_AUTH_PLUGIN``, else the colcon install
    next to this package (``COLCON_PREFIX_PATH`` entries, then the install tree this module runs from)."""
    explicit = os.environ.get(PLUGIN_ENV, "")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(PLUGIN_ENV, explicit, "no such file (the Mosquitto client-id plugin)")
        return Path(explicit)
    prefixes = [Path(p) for p in os.environ.get("COLCON_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [p for p in Path(__file__).resolve().parents if p.name == "install"]
    for prefix in prefixes:
        for base in (prefix / PLUGIN_PACKAGE, prefix):  # isolated and merged colcon installs
            candidate = base / "lib" / PLUGIN_PACKAGE / PLUGIN_FILE
            if candidate.is_file():
                return candidate
    raise ConfigError(
        "mosquitto plugin", PLUGIN_FILE,
        "not built: run scripts/build.sh (needs the Debian packages mosquitto-dev libmosquitto-dev libssl-dev) "
        f"or set {PLUGIN_ENV}",
    )  # fmt: skip


def container_conf(template: str) -> str:
    """docker/mosquitto/mosquitto.conf from the text of config/mosquitto/mosquitto.conf."""
    return CONTAINER_HEADER + render_conf(template, CONTAINER_OVERRIDES)


def site_overrides(port: int, secrets: Path, acl: Path, data_dir: Path, user: str = "") -> dict[str, str]:
    """Overrides for a broker on 127.0.0.1:<port> with certificates in ``secrets`` (certs.py layout) and the
    client-id plugin built in this workspace."""
    out = {
        "listener": f"{port} 127.0.0.1",
        "cafile": str(secrets / "ca.crt"),
        "certfile": str(secrets / "mosquitto.crt"),
        "keyfile": str(secrets / "mosquitto.key"),
        "acl_file": str(acl),
        "persistence_location": f"{data_dir}/",
        "plugin": str(client_id_plugin()),
    }
    if user:
        out["user"] = user  # when started as root: stay this user instead of dropping to `mosquitto`
    return out


def main(argv: list[str] | None = None) -> None:
    """``container``: print docker/mosquitto/mosquitto.conf rendered from config/mosquitto/mosquitto.conf."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Render Mosquitto configs from config/mosquitto/.")
    parser.add_argument("what", choices=["container"])
    parser.add_argument("--template", type=Path, default=Path("config/mosquitto/mosquitto.conf"))
    args = parser.parse_args(argv)
    sys.stdout.write(container_conf(args.template.read_text()))


if __name__ == "__main__":
    main()
