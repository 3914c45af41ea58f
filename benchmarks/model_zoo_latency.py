"""The model zoo (benchmarks/model_zoo.py: ResNet-18 at 256², ResNet-50, MobileNetV2/V3, EfficientNet-B0, a
U-Net-like model) packaged by real jobs for this machine's CPU (x86_64, or ARM64 when run on one) and timed
against ONNX Runtime, side by side: each runtime in its own process, in alternating rounds
(benchmarks/isolated_runners.py). Needs the test extra (torch, torchvision for building the zoo).

    python benchmarks/model_zoo_latency.py [--repeats 10] [--mcpu NAME] [--tuning-minutes M] [--models A,B]

One row per model: ONNX Runtime ms, default packaging ms (no search: stored records where they apply, the
search-free schedules elsewhere) and its ratio, the packaging job's wall time; with --tuning-minutes, also the
model packaged again with that tuning budget (the service's records of the models before it already in its
database, as a user's would be) and its ratio. Figures are medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.isolated_runners import RunnerSpec, interleaved_medians  # noqa: E402
from benchmarks.model_zoo import ZOO, export  # noqa: E402
from benchmarks.performance import host_cpu  # noqa: E402

# This machine's platform: on an ARM64 device (with the compiler installed) the script packages for ARM64.
PLATFORM = {"Os": "LINUX", "Arch": "ARM64" if platform.machine() == "aarch64" else "X86_64"}


def package(service: object, onnx_path: Path, name: str, version: str, options: dict, out: Path) -> tuple[Path, float]:
    """One real packaging job for this machine's CPU: the exported model.zip and the job's wall time (s)."""
    timeout = options.get("tuning-minutes", 0) * 60 + 600  # the search, then the compile and checks
    from tests.agent_harness import PackagingRequest, package_models

    component = "com.example." + "".join(c for c in name if c.isalnum())
    request = PackagingRequest("zoo", onnx_path, {}, component, version)
    configuration = {"TargetPlatform": PLATFORM, "CompilerOptions": json.dumps(options)}
    started = time.perf_counter()
    bundles = package_models(service, [request], out, {component: configuration}, timeout)
    return bundles[f"{component}-{version}"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (default 10)")
    parser.add_argument("--mcpu", default=host_cpu(), help="CPU to build for (default: this machine's)")
    parser.add_argument("--tuning-minutes", type=float, default=0, help="also package with this tuning budget")
    parser.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    args = parser.parse_args()
    from compiler.api.service import Service
    from compiler.settings import Settings
    from tests.conftest import stop_workers

    chosen = [m for m in ZOO if not args.models or m.name in args.models.split(",")]
    tuned_header = f" {'tuned ms':>9} {'× ORT':>6}" if args.tuning_minutes else ""
    print(f"mcpu {args.mcpu}; {args.repeats} timed runs per figure, medians")
    print(f"{'model':<18} {'input':>6} {'ORT ms':>8} {'default ms':>11} {'× ORT':>6} {'packaging s':>12}{tuned_header}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        service = Service(Settings(data_dir=work / "data", max_workers=1))
        try:
            for model in chosen:
                onnx_path = export(model, work / "zoo" / f"{model.name}.onnx")
                default, seconds = package(service, onnx_path, model.name, "1.0.0", {"mcpu": args.mcpu}, work / "gg")
                runners = {"ort": RunnerSpec("onnxruntime", onnx_path), "default": RunnerSpec("bundle", default)}
                if args.tuning_minutes:
                    budget = {"mcpu": args.mcpu, "tuning-trials": 20000, "tuning-minutes": args.tuning_minutes}
                    tuned, _ = package(service, onnx_path, model.name, "2.0.0", budget, work / "gg")
                    runners["tuned"] = RunnerSpec("bundle", tuned)
                tensor = np.random.default_rng(0).random((1, 3, model.size, model.size), dtype=np.float32)
                ms = interleaved_medians(runners, tensor, args.repeats)
                row = f"{model.name:<18} {model.size:>6} {ms['ort']:>8.2f} {ms['default']:>11.2f} "
                row += f"{ms['default'] / ms['ort']:>6.2f} {seconds:>12.1f}"
                if args.tuning_minutes:
                    row += f" {ms['tuned']:>9.2f} {ms['tuned'] / ms['ort']:>6.2f}"
                print(row, flush=True)
        finally:
            stop_workers(service)


if __name__ == "__main__":
    main()
