"""The `lookout-edge` command: says which extra to install when the packaging service's dependencies are missing
(a device install of the agent has only the base dependencies)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from compiler.api.cli import main as run
    except ModuleNotFoundError as exc:
        print(
            f"lookout-edge: the packaging service needs the 'compiler' extra ({exc.name} is missing): "
            "python3 -m pip install 'lookout-edge[compiler]'",
            file=sys.stderr,
        )
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())
