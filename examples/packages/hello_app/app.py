"""Sample app: writes a heartbeat file the health check reads and logs a line every 10 s.

deploy_service sets RP_PACKAGE and RP_VERSION; the working directory is the version's install dir.
"""

import os
import signal
import sys
import time
from pathlib import Path

running = True


def stop(_signum: int, _frame: object) -> None:
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
version = os.environ.get("RP_VERSION", "?")
heartbeat = Path("heartbeat")
print(f"INFO: hello_app {version} started", flush=True)
beats = 0
while running:
    heartbeat.write_text(str(time.time()))
    if beats % 20 == 0:
        print(f"INFO: hello_app {version} alive ({beats // 2} s)", flush=True)
    beats += 1
    time.sleep(0.5)
print(f"INFO: hello_app {version} stopping", flush=True)
sys.exit(0)
