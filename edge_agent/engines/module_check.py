"""Runs a compiled module once, in the agent's runtime configuration, in a process of its own.

The packaging service compiles with the full TVM library in its own process; the agent imports the TVM runtime
library alone (plus the extensions it loads itself). The packager's parity check runs the module through this
command, so a module that packages is a module the agent can load:

    python -m edge_agent.engines.module_check --library model.so --input in.npy --output out.npz --names a b
        [--device-code '{"file": ..., "arch": ..., "source_sha256": ...}']   (NVIDIA: the shipped cubin)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_agent.engines.tvm_runtime import load_runtime_library_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True, help="the input tensor (.npy)")
    parser.add_argument("--output", type=Path, required=True, help="where to write the outputs (.npz, by name)")
    parser.add_argument("--names", nargs="+", required=True, help="the module's output names, in order")
    parser.add_argument("--device-code", help="the manifest's compiler.device_code entry (NVIDIA bundles)")
    args = parser.parse_args(argv)
    load_runtime_library_only()
    from edge_agent.engines.cuda_device_code import ShippedCubin
    from edge_agent.engines.tvm_runtime import CompiledModule

    try:
        cubin = None
        if args.device_code:
            cubin = ShippedCubin.from_device_code(args.library.parent, json.loads(args.device_code))
        outputs = CompiledModule(args.library, args.names, cubin).run(np.load(args.input))
    except Exception as exc:  # the parent reports the one line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    np.savez(args.output, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
