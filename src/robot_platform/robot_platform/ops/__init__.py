"""Remote operations: robot registry, centralised logs, reverse-SSH access, safe remote actions."""
