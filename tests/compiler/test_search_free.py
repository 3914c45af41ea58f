"""Search-free CPU schedules: packed direct convolutions, the shape rules, vectorisable exponentials; each checked
against ONNX Runtime through the packaging pipeline's own scheduling (compiler/build/tuning.py: schedule_module)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.build.depthwise_conv import use_depthwise_convolutions, widened
from compiler.build.fast_math import use_fast_math
from compiler.build.packed_conv import pack_weights, use_packed_convolutions
from compiler.build.search_free import search_free_schedule, simd_lanes, spatial_tiles
from compiler.build.targets import resolve_target
from compiler.build.tuning import TuningRequest, schedule_module, tuning_tasks
from compiler.build.tvm_build import tvm_target
from tests.models import conv_model, import_relax

X86 = {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}}  # core-avx2: 8 lanes, runs on any AVX2 machine


def _run_scheduled(model: onnx.ModelProto, inputs: dict[str, np.ndarray], tmp_path) -> tuple[list, object]:
    """The model scheduled as a packaging job with no search would schedule it, compiled for this machine, run."""
    import tvm
    from tvm import relax

    target = resolve_target(X86)
    mod, report = schedule_module(import_relax(model), target, tmp_path, TuningRequest(), lambda _: None)
    vm = relax.VirtualMachine(tvm.compile(mod, tvm_target(target)), tvm.cpu())
    out = vm["main"](*(tvm.runtime.tensor(value) for value in inputs.values()))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out], report


def _onnx_runtime(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)


@pytest.mark.parametrize(
    ("channels", "kernel", "side", "conv_attrs"),
    [
        ((16, 8), 3, 20, {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        ((20, 6), 3, 12, {"pads": [0, 1, 2, 1]}),  # output channels not a whole number of vectors; uneven padding
        ((8, 4), 3, 12, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
        ((24, 16), 1, 9, {}),
        ((16, 3), 7, 30, {"pads": [3, 3, 3, 3], "strides": [2, 2]}),  # a ResNet stem
        ((12, 12), 3, 12, {"pads": [1, 1, 1, 1], "group": 12}),  # depthwise; rows of 13 widened to 16
        ((16, 16), 5, 23, {"pads": [2, 2, 2, 2], "strides": [2, 2], "group": 16}),  # EfficientNet's 5×5, stride 2
        ((16, 8), 3, 6, {"pads": [0, 1, 2, 1], "group": 8}),  # channel multiplier 2, uneven padding, 7-wide rows
        ((8, 8), 3, 12, {"pads": [2, 2, 2, 2], "dilations": [2, 2], "group": 8}),
        ((8, 4), 3, 10, {"pads": [1, 1, 1, 1], "group": 2}),  # grouped, 2 channels per group: TVM's own kernel
    ],
    ids=[
        "stride-2",
        "ragged-channels",
        "dilated",
        "1x1",
        "stem-7x7",
        "depthwise",
        "depthwise-5x5-stride-2",
        "depthwise-multiplier-2",
        "depthwise-dilated",
        "grouped",
    ],
)
def test_convolutions_on_search_free_schedules_match_onnx_runtime(channels, kernel, side, conv_attrs, tmp_path) -> None:
    channels_out, channels_in = channels
    rng = np.random.default_rng(3)
    shape = (channels_out, channels_in // int(conv_attrs.get("group", 1)), kernel, kernel)
    model = conv_model(side, rng.normal(0, 0.2, shape).astype(np.float32), **conv_attrs)
    image = {"x": rng.normal(0, 1, (1, channels_in, side, side + 1)).astype(np.float32)}
    (got,), report = _run_scheduled(model, image, tmp_path)
    (expected,) = _onnx_runtime(model, image)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * float(np.abs(expected).max()))
    assert report.search_free == report.tasks > 0 and report.records_used == 0
    kernels = report.tasks
    assert report.describe().endswith(f"tuned kernels applied: 0 of {kernels}; search-free schedules: {kernels}.")


def test_only_ungrouped_convolutions_with_constant_weights_are_packed() -> None:
    weight = np.ones((8, 8, 3, 3), dtype=np.float32)
    packed = use_packed_convolutions(import_relax(conv_model(10, weight, pads=[1, 1, 1, 1])), 8).script()
    assert "R.nn.conv2d(" not in packed and "packed_conv" in packed
    grouped = np.ones((8, 4, 3, 3), dtype=np.float32)
    kept = use_packed_convolutions(import_relax(conv_model(10, grouped, pads=[1, 1, 1, 1], group=2)), 8).script()
    assert "R.nn.conv2d(" in kept and "packed_conv" not in kept


@pytest.mark.parametrize(
    ("weight_shape", "group", "rewritten"),
    [((8, 1, 3, 3), 8, True), ((16, 1, 3, 3), 8, True), ((8, 2, 3, 3), 4, False), ((8, 8, 3, 3), 1, False)],
    ids=["depthwise", "multiplier-2", "two-channels-per-group", "ungrouped"],
)
def test_only_convolutions_reading_one_input_channel_per_output_become_depthwise_kernels(
    weight_shape, group, rewritten
) -> None:
    model = import_relax(conv_model(10, np.ones(weight_shape, dtype=np.float32), pads=[1, 1, 1, 1], group=group))
    script = use_depthwise_convolutions(model, 8).script()
    assert ("depthwise_conv" in script) == rewritten and ("R.nn.conv2d(" in script) != rewritten


def test_depthwise_rows_are_widened_to_whole_vectors_of_the_fewest_lanes_that_hold_them() -> None:
    assert [widened(width, 16) for width in (7, 13, 14, 28, 56, 112)] == [8, 16, 16, 32, 64, 112]
    assert [widened(width, 8) for width in (7, 14, 56)] == [8, 16, 56]
    assert [widened(width, 4) for width in (3, 7)] == [4, 8]


def test_weights_are_packed_by_output_channel_block_with_zeros_past_the_last_channel() -> None:
    weight = np.arange(20 * 2 * 1 * 1, dtype=np.float32).reshape(20, 2, 1, 1)
    packed = pack_weights(weight, 8)
    assert packed.shape == (3, 2, 1, 1, 8)
    assert packed[1, 1, 0, 0, 3] == weight[8 + 3, 1, 0, 0] and not packed[2, :, :, :, 4:].any()


def test_the_rules_vectorise_the_innermost_loop_and_register_block_the_next() -> None:
    # A packed convolution's [N, CO/v, OH, OW, v]: the lanes whole, 8 output columns per register block.
    tiles = spatial_tiles([1, 6, 56, 56, 16], 16)
    assert tiles == [[1, 1, 1, 1], [6, 1, 1, 1], [56, 1, 1, 1], [7, 1, 1, 8], [1, 1, 1, 16]]
    # A row of 7 (ResNet's last stage): the largest divisors that fit.
    assert spatial_tiles([1, 32, 7, 7], 16)[-2:] == [[1, 1, 1, 7], [1, 1, 1, 7]]


@pytest.mark.parametrize(
    ("platform", "mattr", "lanes", "vector_fma"),
    [("X86_64", None, 8, "vfmadd"), ("ARM64", ["+neon"], 4, "fmla\tv")],
    ids=["x86_64-avx2", "arm64-neon"],
)
@pytest.mark.parametrize(
    ("kernel", "weight_shape", "group"),
    [("packed_conv", (32, 16, 3, 3), 1), ("depthwise_conv", (16, 1, 3, 3), 16)],
    ids=["packed", "depthwise"],
)
def test_a_convolution_is_parallel_and_vectorised_for_the_targets_simd(
    platform, mattr, lanes, vector_fma, kernel, weight_shape, group
) -> None:
    import json

    import tvm

    options = {"CompilerOptions": json.dumps({"mattr": mattr})} if mattr else {}
    target = resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": platform}, **options})
    weight = np.random.default_rng(0).normal(0, 1, weight_shape).astype(np.float32)
    model = import_relax(conv_model(14, weight, pads=[1, 1, 1, 1], group=group))
    _, measured_for, tasks = tuning_tasks(model, target, winograd=False)
    assert simd_lanes(measured_for) == lanes
    (task,) = [t for t in tasks if kernel in t.task_name]
    schedule = search_free_schedule(task.dispatched[0], measured_for)
    script = schedule.mod.script()
    assert "T.parallel(" in script and f"T.vectorized(T.int64({lanes}))" in script
    assembly = tvm.compile(schedule.mod, tvm_target(target)).mod.inspect_source("asm")
    assert vector_fma in assembly, f"no {vector_fma} in the {platform} code"


def test_exponentials_become_vectorisable_approximations_that_match_onnx_runtime(tmp_path) -> None:
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["silu"]),
        helper.make_node("Exp", ["silu"], ["e"]),
        helper.make_node("Softmax", ["e"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "exponentials",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    rewritten = use_fast_math(import_relax(model)).script()
    assert not any(op in rewritten for op in ("R.sigmoid(", "R.exp(", "R.nn.softmax("))
    values = {"x": np.linspace(-8, 3, 64, dtype=np.float32).reshape(1, 64)}
    (got,), _ = _run_scheduled(model, values, tmp_path)
    (expected,) = _onnx_runtime(model, values)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_a_search_free_trace_replays_whatever_compute_locations_a_search_mutates() -> None:
    """Tuning starts from the search-free schedules, and its mutations change their sampled compute locations;
    the replay must then apply or refuse cleanly (ScheduleError), never break on the epilogue-fusion steps."""
    from tvm import s_tir

    target = resolve_target(X86)
    weight = np.random.default_rng(0).normal(0, 1, (32, 16, 3, 3)).astype(np.float32)
    model = import_relax(conv_model(14, weight, pads=[1, 1, 1, 1], strides=[2, 2]))
    _, measured_for, tasks = tuning_tasks(model, target, winograd=False)
    (task,) = [t for t in tasks if "packed_conv" in t.task_name]
    trace = search_free_schedule(task.dispatched[0], measured_for).trace
    locations = [inst for inst in trace.insts if inst.kind.name == "SampleComputeLocation"]
    assert locations, "the padding's compute location is sampled"

    def replays(mutated: object, location: int) -> bool:
        def provide(inst: object, _inputs: list, _attrs: list, decision: object) -> object:
            return location if inst.same_as(mutated) else decision

        try:
            trace.apply_to_schedule(s_tir.Schedule(task.dispatched[0]), True, provide)
        except s_tir.ScheduleError:  # a location that is not valid for the block: refused, as a search expects
            return False
        return True

    assert sum(replays(mutated, location) for mutated in locations for location in range(-2, 6)) >= 2


def test_a_depthwise_trace_replays_whatever_tiles_a_search_mutates() -> None:
    """A search mutates the seed's tile sizes; the rules' per-plane padding step must replay under each of them
    (a perfect tile moved between levels, for every tiled loop)."""
    from tvm import s_tir

    weight = np.random.default_rng(0).normal(0, 1, (24, 1, 3, 3)).astype(np.float32)
    model = import_relax(conv_model(20, weight, pads=[1, 1, 1, 1], group=24))
    _, measured_for, tasks = tuning_tasks(model, resolve_target(X86), winograd=False)
    (task,) = [t for t in tasks if "depthwise_conv" in t.task_name]
    trace = search_free_schedule(task.dispatched[0], measured_for).trace
    tiles = [inst for inst in trace.insts if inst.kind.name == "SamplePerfectTile" and int(inst.attrs[0]) == 4]
    assert len(tiles) == 4, "batch, channel, rows and columns are tiled"
    replayed = 0
    for mutated in tiles:
        decision = [int(f) for f in trace.decisions[mutated]]
        for moved in (decision[1:] + decision[:1], decision[-1:] + decision[:-1]):

            def provide(inst: object, _inputs: list, _attrs: list, original: object, change=(mutated, moved)) -> object:
                return change[1] if inst.same_as(change[0]) else original

            schedule = s_tir.Schedule(task.dispatched[0])
            trace.apply_to_schedule(schedule, True, provide)
            assert "depthwise_conv_padded" in schedule.mod.script()
            replayed += 1
    assert replayed == 8
