"""Runs a bundle's compiled module on its golden input and saves the outputs; executed by the arm64 Python
under qemu user-mode emulation (so it needs only TVM and numpy).

    python arm64_runner.py BUNDLE_DIR OUT.npz
"""

import json
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

bundle, out = Path(sys.argv[1]), sys.argv[2]
manifest = json.loads((bundle / "manifest.json").read_text())
device = tvm.cpu()
vm = relax.VirtualMachine(tvm.runtime.load_module(str(bundle / manifest["compiler"]["library"])), device)
result = vm["main"](tvm.runtime.tensor(np.load(bundle / manifest["golden"]["input"]), device))
arrays = [result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result]
np.savez(out, **dict(zip(manifest["outputs"], arrays, strict=True)))
