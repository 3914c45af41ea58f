"""The performance benchmark: one command, every figure, for the bundled reference model on this machine.

    python benchmarks/performance.py [--tuning-trials 2000] [--tuning-minutes 30] [--json results.json]
    python benchmarks/performance.py --quick      # a few minutes: small budget, fewer repeats
    python benchmarks/performance.py --agent-only model.zip   # the agent figures alone, for a bundle you have

Prints, and writes as JSON: machine and versions; ONNX Runtime latency; TVM with default schedules, the
default packaging (stored/shipped tuning records, no search) and a tuned packaging (trial budget and tuning
time), each with its ratio to ONNX Runtime; the agent's DetectAnomalies p50/p99 and own overhead for 224²,
1024² and 4096² images via bytes and via shared memory; throughput with 1, 4 and 16 clients; the agent's
peak RSS; packaging time per target. Latencies are medians over repeated runs, each runtime in a process of its
own (benchmarks/isolated_runners.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.agent_load import agent_figures  # noqa: E402
from benchmarks.isolated_runners import RunnerSpec, interleaved_medians  # noqa: E402
from compiler.build.targets import resolve_target  # noqa: E402
from compiler.build.tvm_build import missing_tools  # noqa: E402
from compiler.settings import Settings  # noqa: E402
from edge_agent.models.cpu_threads import configure_thread_pool  # noqa: E402

X86 = {"Os": "LINUX", "Arch": "X86_64"}


def host_cpu() -> str:
    """This machine's CPU as LLVM names it: the x86_64 figures are for code built for it, as ONNX Runtime's are."""
    import tvm.target.codegen as codegen

    return codegen.llvm_get_system_cpu()


HOST = json.dumps({"mcpu": host_cpu()})
TARGETS: dict[str, dict[str, Any]] = {
    "x86_64 CPU": {"TargetPlatform": X86, "CompilerOptions": HOST},
    "ARM64 CPU": {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}},
    "jetson_xavier": {"TargetDevice": "jetson_xavier"},
    "x86_64 NVIDIA sm_75": {
        "TargetPlatform": {**X86, "Accelerator": "NVIDIA"},
        "CompilerOptions": '{"gpu-code": "sm_75", "trt-ver": "8.6.1", "cuda-ver": "11.8"}',
    },
}


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions = {
        p: metadata.version(p) for p in ("apache-tvm", "onnxruntime", "numpy", "opencv-python-headless", "grpcio")
    }
    return {
        "cpu": model,
        "llvm_cpu": host_cpu(),
        "cores": os.cpu_count(),
        "tvm_threads": configure_thread_pool(),
        "python": platform.python_version(),
        "versions": versions,
    }


class Packager:
    """A packaging service in a private data folder; times each job from Start to SUCCEEDED."""

    def __init__(self, data_dir: Path, model_path: Path, metadata_path: Path, shipped_records: bool = True) -> None:
        from dataclasses import replace

        from compiler.api.service import Service

        self.service = Service(replace(Settings.from_env(data_dir), shipped_records=shipped_records))
        self.out = data_dir / "exported"
        self.service.call("CreateProject", {"ProjectName": "bench"})
        self.version = self.service.call(
            "CreateModel",
            {
                "ProjectName": "bench",
                "ModelFile": str(model_path),
                "ModelMetadata": json.loads(metadata_path.read_text()),
            },
        )["ModelMetadata"]["ModelVersion"]
        self._count = 0

    def package(self, target: dict[str, Any]) -> tuple[Path, float, dict[str, Any]]:
        """(model.zip, seconds, manifest) of one job for `target`."""
        from tests.conftest import wait_for_job

        self._count += 1
        component = ("com.example.Bench", f"{self._count}.0.0")
        started = time.perf_counter()
        greengrass = {**target, "ComponentName": component[0], "ComponentVersion": component[1]}
        greengrass["S3OutputLocation"] = {"Bucket": "bench"}
        job = self.service.call(
            "StartModelPackagingJob",
            {"ProjectName": "bench", "ModelVersion": self.version, "Configuration": {"Greengrass": greengrass}},
        )["JobName"]
        description = wait_for_job(self.service, "bench", job, timeout=4 * 3600)
        seconds = time.perf_counter() - started
        if description["Status"] != "SUCCEEDED":
            raise RuntimeError(f"packaging for {target} failed: {description['StatusMessage']}")
        exported = self.service.call(
            "ExportComponent",
            {"ComponentName": component[0], "ComponentVersion": component[1], "Output": str(self.out)},
        )
        archive = Path(exported["ArtifactFiles"][0])
        import zipfile

        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        return archive, seconds, manifest


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnx

    from compiler.build.parity import golden_input
    from compiler.models.contract import inspect_model
    from compiler.models.reference_model import build_reference_model
    from tests.agent_harness import generate_client_stubs

    configure_thread_pool()  # as the agent does; TVM's own default is half the logical CPUs on x86
    work = Path(tempfile.mkdtemp(prefix="lookout-edge-performance-"))
    print(f"working in {work}", flush=True)
    reference = build_reference_model(work / "reference")
    model = onnx.load(str(reference.model_path))
    spec = inspect_model(model, None, json.loads(reference.metadata_path.read_text()))
    tensor = golden_input(spec)
    results: dict[str, Any] = {"machine": machine(), "repeats": args.repeats}

    packager = Packager(work / "service", reference.model_path, reference.metadata_path)
    packaging: dict[str, Any] = {}
    default_zip = None
    for name, target in TARGETS.items():
        missing = missing_tools(resolve_target(target), work / "service")
        if missing:
            packaging[name] = "skipped: " + "; ".join(missing)
            continue
        archive, seconds, manifest = packager.package(target)
        packaging[name] = {"seconds": seconds, "schedules": manifest["compiler"]["tuning"]["source"]}
        print(f"packaged {name} in {seconds:.0f} s", flush=True)
        default_zip = archive if name == "x86_64 CPU" else default_zip

    options = json.dumps(
        {"mcpu": host_cpu(), "tuning-trials": args.tuning_trials, "tuning-minutes": args.tuning_minutes}
    )
    # The tuned figure is the search's own: a fresh database, without the records shipped with the service.
    cold = Packager(work / "tuning-service", reference.model_path, reference.metadata_path, shipped_records=False)
    tuned_zip, tuned_s, manifest = cold.package({"TargetPlatform": X86, "CompilerOptions": options})
    _, warm_s, warm_manifest = cold.package({"TargetPlatform": X86, "CompilerOptions": options})
    packaging["x86_64 CPU tuned (cold database)"] = {"seconds": tuned_s, "tuning": manifest["compiler"]["tuning"]}
    packaging["x86_64 CPU tuned (warm database)"] = {"seconds": warm_s, "tuning": warm_manifest["compiler"]["tuning"]}
    results["packaging"] = packaging

    results["latency_ms"] = interleaved_medians(
        {
            "onnxruntime": RunnerSpec("onnxruntime", reference.model_path),
            "tvm_default_packaging": RunnerSpec("bundle", default_zip),
            "tvm_tuned": RunnerSpec("bundle", tuned_zip),
        },
        tensor,
        args.repeats,
    )
    # A run of the default schedules takes seconds: fewer turns.
    results["latency_ms"] |= interleaved_medians(
        {"tvm_default_schedules": RunnerSpec("default_schedules", reference.model_path, spec, TARGETS["x86_64 CPU"])},
        tensor,
        max(3, args.repeats // 4),
    )
    ort_ms = results["latency_ms"]["onnxruntime"]
    print("latency (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in results["latency_ms"].items()), flush=True)
    results["tuning_budget"] = {"trials": args.tuning_trials, "minutes": args.tuning_minutes}
    results["ratio_to_onnxruntime"] = {k: v / ort_ms for k, v in results["latency_ms"].items()}

    pb, pb_grpc = generate_client_stubs(work / "stubs")
    fastest = min(
        ("tvm_default_packaging", default_zip), ("tvm_tuned", tuned_zip), key=lambda c: results["latency_ms"][c[0]]
    )
    results["agent"] = {
        "bundle": fastest[0],
        **agent_figures(fastest[1], pb, pb_grpc, args.repeats, (224, 1024, 4096), (1, 4, 16)),
    }
    return results


def run_agent_only(args: argparse.Namespace) -> dict[str, Any]:
    """The agent figures alone, serving a bundle the caller packaged (a model.zip exported by the service)."""
    from tests.agent_harness import generate_client_stubs

    pb, pb_grpc = generate_client_stubs(Path(tempfile.mkdtemp(prefix="lookout-edge-performance-")) / "stubs")
    figures = agent_figures(args.agent_only, pb, pb_grpc, args.repeats, (224, 1024, 4096), (1, 4, 16))
    return {"machine": machine(), "repeats": args.repeats, "agent": {"bundle": str(args.agent_only), **figures}}


def _schedules(packaging: dict[str, Any]) -> str:
    tuning = packaging.get("tuning")
    if tuning is None:
        return packaging["schedules"]
    return f"{tuning['source']}, {tuning['trials_run']} trials in {tuning['seconds']:.0f} s"


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores ({m['tvm_threads']} TVM threads), Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    ]
    if "latency_ms" in results:  # not with --agent-only
        lines.append("\nlatency, reference model 224×224 (median ms, ratio to ONNX Runtime):")
        for name, value in results["latency_ms"].items():
            lines.append(f"  {name:28s} {value:9.1f}  {results['ratio_to_onnxruntime'][name]:6.2f}×")
        budget = results["tuning_budget"]
        lines.append(f"  (tuned: budget {budget['trials']} trials / {budget['minutes']:g} min)")
        lines.append("\npackaging time per target:")
        for name, value in results["packaging"].items():
            lines.append(
                f"  {name:34s} "
                + (f"{value['seconds']:7.0f} s  ({_schedules(value)})" if isinstance(value, dict) else value)
            )
    agent = results["agent"]
    lines.append(
        f"\nagent DetectAnomalies with the mask ({agent['bundle']} bundle): p50 / p99 ms; overhead = minus inference"
    )
    for name, value in agent["detect"].items():
        total = f"{value['p50_ms']:8.1f} / {value['p99_ms']:8.1f}"
        lines.append(
            f"  {name:18s} total {total}   overhead {value['overhead_p50_ms']:7.2f} / {value['overhead_p99_ms']:7.2f}"
        )
    lines.append("throughput, 224² bytes:")
    for load in agent["throughput"]:
        rate = f"{load['requests_per_s']:7.2f} req/s"
        lines.append(
            f"  {load['clients']:2d} clients  {rate}  p50 {load['p50_ms']:.1f} ms  p99 {load['p99_ms']:.1f} ms"
        )
    lines.append(
        f"agent peak RSS: {agent['peak_rss_mib_224']:.0f} MiB serving 224² images, "
        f"{agent['peak_rss_mib']:.0f} MiB after the 4096² requests"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tuning-trials", type=int, default=2000, help="trial budget of the tuned packaging")
    parser.add_argument("--tuning-minutes", type=float, default=30.0, help="time cap of the tuned packaging")
    parser.add_argument("--repeats", type=int, default=40, help="timed runs per latency figure")
    parser.add_argument("--json", type=Path, default=Path("benchmark-results.json"), help="where to write results")
    parser.add_argument("--quick", action="store_true", help="64 trials / 5 min, 10 repeats: a smoke run")
    parser.add_argument(
        "--agent-only",
        type=Path,
        metavar="MODEL_ZIP",
        help="skip packaging and model timing: only the agent figures, serving this bundle (a model.zip)",
    )
    args = parser.parse_args()
    if args.quick:
        args.tuning_trials, args.tuning_minutes, args.repeats = 64, 5.0, 10
    if args.agent_only is not None and not args.agent_only.is_file():
        parser.error(f"--agent-only: {args.agent_only} is not a file; pass a model.zip exported by the service")
    results = run_agent_only(args) if args.agent_only is not None else run(args)
    print("\n" + report(results))
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
