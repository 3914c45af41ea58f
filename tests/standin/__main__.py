"""Run the stand-in nucleus for local development: the agent, started with the printed environment, talks
Greengrass IPC to it; every call is printed as it arrives.

    python -m tests.standin --socket /tmp/gg-ipc.sock --config '{"ReportIntervalSeconds": 10}'
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import time
from pathlib import Path

from tests.standin.nucleus import StandinNucleus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", default="/tmp/gg-ipc.sock")
    parser.add_argument("--component", default="lookoutedge.EdgeAgent")
    parser.add_argument("--token", default="".join(secrets.choice(string.ascii_uppercase) for _ in range(16)))
    parser.add_argument("--config", default="{}", help="the component's configuration, as JSON")
    args = parser.parse_args()
    nucleus = StandinNucleus(Path(args.socket), args.token, args.component, json.loads(args.config)).start()
    print(
        f"export AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT={args.socket} SVCUID={args.token} "
        "AWS_IOT_THING_NAME=local-thing",
        flush=True,
    )
    shown = 0
    try:
        while True:
            time.sleep(0.5)
            for call in nucleus.calls[shown:]:
                print(
                    f"{time.strftime('%H:%M:%S', time.localtime(call.at))} {call.operation} "
                    f"{json.dumps(call.request)[:400]}",
                    flush=True,
                )
            shown = len(nucleus.calls)
    except KeyboardInterrupt:
        nucleus.stop()


if __name__ == "__main__":
    main()
