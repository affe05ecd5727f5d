"""Health check of hello_app: healthy while its heartbeat is fresher than 2 s."""

import sys
import time
from pathlib import Path

try:
    age = time.time() - float(Path("heartbeat").read_text())
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if age < 2.0 else 1)
