"""How fast tuning converges from a cold and from a warm database: the second zoo model tuned once with a fresh
service database, once with the database (records and cost model) left by tuning the first model, each for the
same budget, through the packaging pipeline's own tuning (compiler/build/tuning.py: schedule_module). Needs the
test extra (torch, torchvision for building the zoo).

    python benchmarks/tuning_curve.py [--first MobileNetV2] [--second MobileNetV3-Large] [--minutes 10]
                                      [--mcpu NAME] [--every 20]

Prints, for each run, the model's estimated latency against minutes of tuning: the sum over its kernels of the
best time measured so far times the kernel's count (what the compiled model's kernels would take; the VM adds a
little). The first point comes after the first round: the search-free schedules, measured before the search
starts, and the round's candidates. The real latency of a
tuned package against ONNX Runtime is what benchmarks/model_zoo_latency.py --tuning-minutes measures.
The zoo models chosen must not use Winograd kernels (the estimate follows the direct-convolution tasks):
MobileNetV2, MobileNetV3-Large and EfficientNet-B0 do not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.model_zoo import ZOO, export  # noqa: E402

MARKS_MIN = (0.5, 1, 2, 4, 6, 8, 10, 15, 20, 30)


def estimated_ms(folder: Path, tasks: list) -> float | None:
    """Σ count × best measured time over `tasks` in the JSON database in `folder` (None until each has one)."""
    import tvm.s_tir.meta_schedule as ms

    try:
        database = ms.database.JSONDatabase(work_dir=str(folder), allow_missing=False)
    except Exception:  # read while the search appends a line: try again at the next report
        return None
    total = 0.0
    for task in tasks:
        mod = task.dispatched[0]
        best = database.get_top_k(database.commit_workload(mod), 1) if database.has_workload(mod) else []
        if not best:
            return None
        total += task.weight * sum(float(s) for s in best[0].run_secs) / len(best[0].run_secs)
    return total * 1e3


def tuning_curve(onnx_path: Path, size: int, mcpu: str, data_dir: Path, minutes: float, every_s: float) -> list:
    """Tune the model for `minutes` with the service database in `data_dir`; [(minutes elapsed, estimate ms)]."""
    import onnx

    from compiler.build.targets import TargetSpec
    from compiler.build.tuning import TuningRequest, records_folder, schedule_module, tuning_tasks
    from compiler.build.tvm_build import import_model, pin_input_shape
    from edge_agent.bundle.model_spec import ModelSpec

    spec = ModelSpec("classification", "input", [size, size], {"probabilities": "scores"})
    target = TargetSpec("x86_64", None, mcpu=mcpu)
    imported = import_model(pin_input_shape(onnx.load(str(onnx_path)), spec), spec)
    _, _, tasks = tuning_tasks(imported, target, winograd=False)
    folder = records_folder(target, data_dir)
    points: list[tuple[float, float]] = []
    started, last = time.time(), [0.0]

    def note(_message: str) -> None:
        if time.time() - last[0] < every_s:
            return
        last[0] = time.time()
        estimate = estimated_ms(folder, tasks)
        if estimate is not None:
            points.append(((time.time() - started) / 60, estimate))

    schedule_module(imported, target, data_dir, TuningRequest(trials=20000, minutes=minutes), note)
    final = estimated_ms(folder, tasks)
    if final is None:
        raise SystemExit(f"{onnx_path.stem}: no record for every task (a Winograd model? see --help)")
    points.append(((time.time() - started) / 60, final))
    return points


def at_marks(points: list, minutes: float) -> list[str]:
    """The estimate reached by each mark (the last point at or before it), '—' before the first point."""
    cells = []
    for mark in (m for m in MARKS_MIN if m <= minutes):
        reached = [estimate for elapsed, estimate in points if elapsed <= mark]
        cells.append(f"{reached[-1]:8.2f}" if reached else f"{'—':>8}")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [m.name for m in ZOO]
    parser.add_argument("--first", default="MobileNetV2", choices=names, help="model tuned first (warms the database)")
    parser.add_argument("--second", default="MobileNetV3-Large", choices=names, help="model tuned cold and warm")
    parser.add_argument("--minutes", type=float, default=10.0, help="tuning budget of each run")
    parser.add_argument("--mcpu", default="znver4", help="LLVM CPU the kernels are built and measured for")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between estimates")
    args = parser.parse_args()
    zoo = {m.name: m for m in ZOO}
    with tempfile.TemporaryDirectory(prefix="tuning-curve-") as scratch:
        root = Path(scratch)
        first, second = zoo[args.first], zoo[args.second]
        paths = {m.name: export(m, root / f"{m.name}.onnx") for m in (first, second)}
        runs = [
            (f"{first.name} (fresh database)", first, root / "warm"),
            (f"{second.name} cold (fresh database)", second, root / "cold"),
            (f"{second.name} warm (after {first.name})", second, root / "warm"),
        ]
        rows = []
        for label, model, data_dir in runs:
            print(f"tuning {label} for {args.minutes:g} min …", flush=True)
            points = tuning_curve(paths[model.name], model.size, args.mcpu, data_dir, args.minutes, args.every)
            rows.append((label, points))
    marks = [m for m in MARKS_MIN if m <= args.minutes]
    print(f"\nmcpu {args.mcpu}; estimated model latency (ms: Σ best kernel time × count) after N minutes of tuning")
    print(f"{'run':45s}" + "".join(f"{f'{m:g} min':>9}" for m in marks) + f"{'end':>9}")
    for label, points in rows:
        print(f"{label:45s}" + " ".join(at_marks(points, args.minutes)) + f" {points[-1][1]:8.2f}")


if __name__ == "__main__":
    main()
