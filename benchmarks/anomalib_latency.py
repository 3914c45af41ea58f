"""anomalib 2.x models with default packaging against ONNX Runtime: PaDiM, PatchCore, FastFlow and STFPM fitted
and exported by anomalib (tests/anomalib_fit.py, about a minute), each packaged for this machine's CPU by a real
job with no search, then timed side by side, each runtime in its own process, in alternating rounds
(benchmarks/isolated_runners.py). Needs the test extra (anomalib, torch).

    python benchmarks/anomalib_latency.py [--repeats 10]

Prints one row per model: ONNX Runtime ms, packaged ms (medians) and their ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.isolated_runners import RunnerSpec, interleaved_medians  # noqa: E402
from benchmarks.performance import HOST  # noqa: E402

MODELS = {"PaDiM": "padim", "PatchCore": "patchcore-batch1", "FastFlow": "fastflow", "STFPM": "stfpm"}


def package(exports: Path, work: Path) -> dict[str, Path]:
    """Each export packaged for this machine's CPU from a model version created without metadata: name → zip."""
    from compiler.api.service import Service
    from compiler.settings import Settings
    from tests.agent_harness import PackagingRequest, package_models

    service = Service(Settings(data_dir=work / "data", max_workers=1))
    requests = [
        PackagingRequest("anomalib", exports / folder / "weights/onnx/model.onnx", {}, f"com.example.{name}", "1.0.0")
        for name, folder in MODELS.items()
    ]
    configuration = {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}, "CompilerOptions": HOST}
    bundles = package_models(service, requests, work / "gg", {r.component: configuration for r in requests})
    return {name: bundles[f"com.example.{name}-1.0.0"] for name in MODELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "tests.anomalib_fit", str(work / "exports")], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        bundles = package(work / "exports", work)
        tensor = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
        print(f"{'model':<10} {'ONNX Runtime':>13} {'packaged':>10} {'× ORT':>7}")
        for name, folder in MODELS.items():
            onnx_path = work / "exports" / folder / "weights/onnx/model.onnx"
            runners = {"ort": RunnerSpec("onnxruntime", onnx_path), "tvm": RunnerSpec("bundle", bundles[name])}
            medians = interleaved_medians(runners, tensor, args.repeats)
            ratio = medians["tvm"] / medians["ort"]
            print(f"{name:<10} {medians['ort']:>10.1f} ms {medians['tvm']:>7.1f} ms {ratio:>6.1f}×", flush=True)


if __name__ == "__main__":
    main()
