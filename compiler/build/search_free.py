"""Search-free CPU schedules: for a kernel no tuning record covers, one vectorised, parallel, register-tiled
schedule chosen from its shapes alone, in milliseconds and without running anything (so it serves ARM64 too).

MetaSchedule's CPU design space (multi-level tiling "SSRSRS", inlining, parallel-vectorise-unroll) gives the
structure; these rules replace each of its random decisions with the choice a kernel writer would make:

- spatial tiles: the innermost loop (a packed convolution's output-channel block, a matrix product's output
  columns, an image row) becomes the vector, as many lanes as the target's SIMD width allows; the loop outside it
  a register block of up to REGISTER_BLOCK; everything else the outer, parallel loops;
- reduction tiles: whole, outside the register tile, so each accumulator stays in a register;
- unrolling: up to UNROLL_STEPS steps (DEPTHWISE_UNROLL_STEPS in depthwise convolutions); producers (padding)
  computed once at the root;
- a packed convolution's unpacking and epilogue run inside its tile (compiler/build/packed_conv.py); a depthwise
  convolution pads its input one channel plane at a time (compiler/build/depthwise_conv.py).

The rules were chosen by measuring variants of ResNet, MobileNet and U-Net kernels on Zen 4 (see
benchmarks/model_zoo_latency.py); a tuning search can still beat them, and its records take precedence.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from compiler.build.depthwise_conv import DEPTHWISE_BLOCK, DEPTHWISE_PADDED_BLOCK
from compiler.build.packed_conv import PACKED_CONV_BLOCK, PACKED_CONV_OUTPUT_BLOCK

REGISTER_BLOCK = 8
UNROLL_STEPS = 64
# Depthwise convolutions unroll less: with their per-plane padding (_pad_depthwise_per_plane) inside the unrolled
# loop nest, 16 steps measured faster than 64 (Zen 4: MobileNetV2 4.9 vs 5.0 ms, EfficientNet-B0 8.8 vs 9.0).
DEPTHWISE_UNROLL_STEPS = 16
# The run time recorded with a rules' schedule: MetaSchedule applies only records with one; nothing measured it.
UNMEASURED_SECONDS = 1.0
# Blocks whose compute location the rules set after the design space (see _placed_by_rules).
_PLACED_BY_RULES = (PACKED_CONV_OUTPUT_BLOCK, DEPTHWISE_PADDED_BLOCK)


def register_tensor_intrinsics() -> None:
    """Import TVM's tensor intrinsics (MetaSchedule's TuneContext does, on first use) with the source lookups of
    its TVMScript parser memoised: it parses ~250 functions, each looking up the module of every frame on the
    stack, and `inspect.getmodule` scans all of sys.modules for each import-machinery frame (21 s on this
    machine's 2 cores; 5 s memoised). The memo lives only for this import."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.getmodule
    by_file: dict[str, Any] = {}

    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        if _filename is None or inspect.ismodule(obj) or hasattr(obj, "__module__"):
            return original(obj, _filename)
        if _filename not in by_file:
            by_file[_filename] = original(obj, _filename)
        return by_file[_filename]

    inspect.getmodule = getmodule
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.getmodule = original


def simd_lanes(target: Any) -> int:
    """float32 lanes of the target's widest vector unit: 16 (AVX-512), 8 (AVX2), 4 (NEON, SSE, other)."""
    from tvm.target import codegen

    if str(target.kind) != "llvm":
        return 4
    for features, lanes in ((["avx512f"], 16), (["avx2"], 8)):
        if "x86_64" in str(target.attrs.get("mtriple", "")) and codegen.llvm_cpu_has_features(features, target):
            return lanes
    return 4


def _largest_divisor(extent: int, cap: int) -> int:
    return max(d for d in range(1, min(extent, cap) + 1) if extent % d == 0)


def spatial_tiles(extents: list[int], lanes: int) -> list[list[int]]:
    """Four-level tiles for a block's spatial loops (outermost first), following the rules above."""
    tiles = [[extent, 1, 1, 1] for extent in extents]
    vector = _largest_divisor(extents[-1], lanes)
    tiles[-1] = [extents[-1] // vector, 1, 1, vector]
    if len(extents) > 1:
        block = _largest_divisor(extents[-2], REGISTER_BLOCK)
        tiles[-2] = [extents[-2] // block, 1, 1, block]
    return tiles


def _tile_groups(trace: Any, mod: Any) -> list[list[int]]:
    """The extents of each tiled block's spatial loops, in the trace's order (replayed with its own decisions)."""
    from tvm import s_tir

    schedule = s_tir.Schedule(mod)
    groups: list[list[int]] = []
    sampling = [False]  # inside a block's run of SamplePerfectTile / Split instructions

    def note(inst: Any, inputs: list, attrs: list, decision: Any) -> Any:
        name = inst.kind.name
        if name == "SamplePerfectTile" and int(attrs[0]) == 4:
            if not sampling[0]:
                groups.append([])
            groups[-1].append(int(schedule.get(inputs[0]).extent))
        sampling[0] = name == "SamplePerfectTile" or (name == "Split" and sampling[0])
        return decision

    trace.apply_to_schedule(schedule, remove_postproc=True, decision_provider=note)
    return groups


def _decide(trace: Any, mod: Any, lanes: int) -> Any:
    """The schedule of `trace`'s design space with every sampled decision made by the rules."""
    from tvm import s_tir

    trace = _placed_by_rules(trace)
    plans = iter([tile for extents in _tile_groups(trace, mod) for tile in spatial_tiles(extents, lanes)])
    schedule = s_tir.Schedule(mod)
    unroll = DEPTHWISE_UNROLL_STEPS if _has_block(schedule, DEPTHWISE_BLOCK) else UNROLL_STEPS

    def decide(inst: Any, inputs: list, attrs: list, decision: Any) -> Any:
        name = inst.kind.name
        if name == "SamplePerfectTile":
            if int(attrs[0]) == 4:
                return next(plans)
            extent = int(schedule.get(inputs[0]).extent)
            return [extent] + [1] * (int(attrs[0]) - 1)
        if name == "SampleCategorical":
            candidates = [int(c) for c in attrs[0]]
            return min(range(len(candidates)), key=lambda i: abs(candidates[i] - unroll))
        if name == "SampleComputeLocation":
            return -1
        return decision

    trace.apply_to_schedule(schedule, remove_postproc=True, decision_provider=decide)
    _fuse_epilogues(schedule)
    _pad_depthwise_per_plane(schedule)
    # Vectors of the SIMD width: wider ones (MetaSchedule fuses inner loops up to 64 lanes) become shuffles of
    # the weights and inputs in a convolution's register tile (10× slower on AVX2).
    root = schedule.get_sblock("root")
    schedule.unannotate(root, "meta_schedule.vectorize")
    schedule.annotate(root, "meta_schedule.vectorize", lanes)
    return schedule


def _placed_by_rules(trace: Any) -> Any:
    """`trace` without the sampled compute locations of the blocks the rules place after the design space (a
    packed convolution's unpacking, a depthwise convolution's padded plane): left in, a search could mutate them
    (e.g. inline them), and the steps placing them would no longer replay."""
    from tvm.s_tir.schedule import Trace

    names, dropped, kept = {}, [], []
    for inst in trace.insts:
        kind = inst.kind.name
        if kind == "GetSBlock":
            names[inst.outputs[0]] = str(inst.attrs[0])
        if kind == "SampleComputeLocation" and names.get(inst.inputs[0]) in _PLACED_BY_RULES:
            dropped.append(inst.outputs[0])
            continue
        if kind == "ComputeAt" and any(inst.inputs[1].same_as(loop) for loop in dropped):
            continue
        kept.append(inst)
    return Trace(kept, {inst: decision for inst, decision in trace.decisions.items() if inst in kept})


def _fuse_epilogues(schedule: Any) -> None:
    """Move what MetaSchedule leaves at the root after a packed convolution (its unpacking to NCHW, and the bias,
    activation and residual add after that) into the tile loop where the convolution's write cache stores its
    results, so they run on data still in cache instead of as extra passes over memory. (Other kernels keep their
    epilogue at the root, where it is vectorised over the whole tensor: inside a depthwise convolution's small
    tiles it is not.) Blocks are found by name and loop counts fixed by the design space, so the trace replays
    whatever a tuning search later changes in its decisions."""
    from tvm import s_tir

    if not _has_block(schedule, PACKED_CONV_BLOCK):  # not a packed convolution (nothing is recorded in the trace)
        return
    convolution = schedule.get_sblock(PACKED_CONV_BLOCK)
    consumers = schedule.get_consumers(convolution)
    if len(consumers) != 1:
        return
    writer = consumers[0]
    tile_loop = _last_shared_loop(schedule, convolution, writer)
    while tile_loop is not None:
        consumers = schedule.get_consumers(writer)
        if len(consumers) != 1:
            return
        try:
            schedule.reverse_compute_at(consumers[0], tile_loop, preserve_unit_loops=True)
        except s_tir.ScheduleError:
            return
        writer = consumers[0]


def _pad_depthwise_per_plane(schedule: Any) -> None:
    """Pad a depthwise convolution's input one channel plane at a time, inside the product's outer channel loop,
    so each plane is convolved while still in cache (MobileNetV2's 144×56² layer on Zen 4: 0.12 → 0.09 ms). Its
    epilogue stays at the root (under the channel loop too it measured no faster). Found by block name and the
    design space's loop order (batch, channel, rows, columns outermost), so the trace replays whatever a search
    changes in its decisions."""
    if not _has_block(schedule, DEPTHWISE_BLOCK):
        return
    channel_loop = schedule.get_loops(schedule.get_sblock(DEPTHWISE_BLOCK))[1]
    schedule.compute_at(schedule.get_sblock(DEPTHWISE_PADDED_BLOCK), channel_loop, preserve_unit_loops=True)


def _has_block(schedule: Any, name: str) -> bool:
    """Whether the scheduled kernel has a block named `name`."""
    from tvm import s_tir

    try:
        schedule.get_sblock(name)
    except s_tir.ScheduleError:
        return False
    return True


def _last_shared_loop(schedule: Any, first: Any, second: Any) -> Any | None:
    """The innermost loop both blocks sit in (None when they share none)."""
    shared = None
    for a, b in zip(schedule.get_loops(first), schedule.get_loops(second), strict=False):
        if not schedule.get(a).same_as(schedule.get(b)):
            break
        shared = a
    return shared


def search_free_schedule(mod: Any, target: Any) -> Any | None:
    """The rules' schedule for the one-kernel module `mod` (a tuning task), or None where no design space of
    the target's rules passes its post-processing (the kernel then keeps TVM's default schedule)."""
    import tvm.s_tir.meta_schedule as ms

    register_tensor_intrinsics()
    context = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply", task_name="search-free")
    lanes = simd_lanes(target)
    for space in context.generate_design_space():
        schedule = _decide(space.trace, mod, lanes)
        schedule.enter_postproc()  # what follows is re-derived on replay, not part of the design
        if all(postproc.apply(schedule) for postproc in context.space_generator.postprocs):
            return schedule
    return None


def search_free_records(tasks: list, target: Any, database: Any) -> int:
    """Commit to `database` the rules' schedule of each task in `tasks`; the number committed."""
    import tvm.s_tir.meta_schedule as ms

    committed = 0
    for task in tasks:
        mod = task.dispatched[0]
        schedule = search_free_schedule(mod, target)
        if schedule is None:
            continue
        workload = database.commit_workload(mod)
        args = ms.arg_info.ArgInfo.from_prim_func(mod[mod.get_global_vars()[0]])
        record = ms.database.TuningRecord(schedule.trace, workload, [UNMEASURED_SECONDS], target, args)
        database.commit_tuning_record(record)
        committed += 1
    return committed
