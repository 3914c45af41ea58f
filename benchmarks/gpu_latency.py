"""Latency of a packaged reference-model bundle's engines on this machine against ONNX Runtime on the same model.

    python benchmarks/gpu_latency.py --bundle BUNDLE_FOLDER_OR_ZIP [--runs 100] [--json out.json]

Every engine of the bundle that can run here is opened as the agent opens it, golden-checked, then timed on the
golden input (median of `--runs`, after warm-up). The reference ONNX model is rebuilt from code (same seed, so
the same topology and weights; its fitted statistics may differ in their last digits where ONNX Runtime's
version differs) and timed with every ONNX Runtime execution provider this machine has (CUDA where
onnxruntime-gpu is installed, else the CPU). scripts/gpu-check.sh runs it on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARM_UP = 5


def _median_ms(run: Callable[[], object], runs: int) -> float:
    for _ in range(WARM_UP):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _engines(bundle_path: Path, unpack: Path, runs: int) -> tuple[dict[str, float], dict[str, str], np.ndarray]:
    from edge_agent.bundle.reader import open_bundle
    from edge_agent.engines.choice import EngineFactory, golden_check
    from edge_agent.engines.tvm_runtime import load_runtime_library_only

    load_runtime_library_only()
    bundle = open_bundle(bundle_path, unpack)
    golden = np.load(bundle.root / bundle.manifest.golden.input)
    factory = EngineFactory(bundle)
    timings, skipped = {}, {}
    try:
        for spec in bundle.engines:
            problem = factory.problem(spec)
            if problem is not None:
                skipped[spec.label] = problem
                continue
            engine = factory.open(spec)
            try:
                golden_check(bundle, engine)
                timings[spec.label] = _median_ms(lambda engine=engine: engine.run(golden), runs)
            finally:
                engine.close()
    finally:
        factory.close()
    return timings, skipped, golden


def _onnx_runtime(tensor: np.ndarray, runs: int, work: Path) -> dict[str, float]:
    import onnxruntime as ort

    from compiler.models.reference_model import build_reference_model

    model = build_reference_model(work / "reference").model_path
    timings = {}
    for provider in ort.get_available_providers():
        if provider not in ("CUDAExecutionProvider", "CPUExecutionProvider"):
            continue
        session = ort.InferenceSession(str(model), providers=[provider])
        feed = {session.get_inputs()[0].name: tensor}
        timings[f"ONNX Runtime {ort.__version__} {provider}"] = _median_ms(
            lambda s=session, f=feed: s.run(None, f), runs
        )
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpu-latency-") as work:
        engines, skipped, tensor = _engines(args.bundle, Path(work) / "bundle", args.runs)
        try:
            references = _onnx_runtime(tensor, args.runs, Path(work))
        except ImportError as exc:
            references = {}
            print(f"ONNX Runtime reference not run: {exc}")
    for label, why in skipped.items():
        print(f"{label}: not usable here: {why}")
    print(f"{'runtime':<48} {'median ms':>10}  " + "  ".join(f"× {name.split()[-1]:<22}" for name in references))
    for name, ms in {**engines, **references}.items():
        ratios = "  ".join(f"{ms / ref:>24.2f}" for ref in references.values())
        print(f"{name:<48} {ms:>10.2f}  {ratios}")
    if args.json:
        args.json.write_text(json.dumps({"engines": engines, "skipped": skipped, "references": references}, indent=2))
    return 0 if engines else 1


if __name__ == "__main__":
    sys.exit(main())
