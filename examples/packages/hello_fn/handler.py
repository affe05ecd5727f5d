"""Sample function: echoes the event with a greeting and the version that answered."""

import os


def main(event, context):
    return {"greeting": os.environ.get("GREETING", "hi"), "version": os.environ.get("RP_VERSION", "?"),
            "echo": event}
