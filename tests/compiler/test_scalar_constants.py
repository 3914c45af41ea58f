"""Kernels are identified by shapes and structure: a fitted scalar (threshold, scale) that changes in its last
digits must not change any tuning workload, or shipped and stored records would stop applying."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.build.parity import golden_input, run_onnx_runtime
from compiler.build.targets import resolve_target
from compiler.build.tuning import tuning_tasks
from compiler.build.tvm_build import import_model, tvm_target
from compiler.models.contract import inspect_model
from edge_agent.bundle.output_parity import compare


def _normalised_score_model(threshold: float, scale: float) -> onnx.ModelProto:
    """conv → (x − threshold) × scale + 0.5 → clip: anomalib's normalisation with fitted scalars."""
    rng = np.random.default_rng(0)
    constants = {
        "w": rng.standard_normal((1, 3, 3, 3)).astype(np.float32),
        "threshold": np.array(threshold, np.float32),
        "scale": np.array(scale, np.float32),
        "half": np.array(0.5, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["raw"], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["raw", "threshold"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "half"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["pred_score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "normalised",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 32, 32]),
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _workloads(model: onnx.ModelProto) -> tuple[list[int], object]:
    import tvm_ffi

    spec = inspect_model(model, None, {})
    target = resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}})
    mod, _, tasks = tuning_tasks(import_model(model, spec), target)
    return sorted(tvm_ffi.structural_hash(task.dispatched[0]) for task in tasks), mod


def test_fitted_scalars_do_not_change_any_tuning_workload() -> None:
    # The two thresholds ONNX Runtime 1.31 and 1.32 fitted for the reference model.
    first, _ = _workloads(_normalised_score_model(14.060856819, 0.0311005))
    second, _ = _workloads(_normalised_score_model(14.060854, 0.0311007))
    assert first == second


def test_scalars_passed_as_arguments_compute_what_onnx_runtime_computes() -> None:
    import tvm
    from tvm import relax

    model = _normalised_score_model(14.060856819, 0.0311005)
    _, mod = _workloads(model)
    spec = inspect_model(model, None, {})
    tensor = golden_input(spec)
    vm = relax.VirtualMachine(
        tvm.compile(mod, tvm_target(resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}}))), tvm.cpu()
    )
    outputs = vm["main"](tvm.runtime.tensor(tensor))
    compiled = {"pred_score": outputs[0].numpy(), "anomaly_map": outputs[1].numpy()}
    report = compare(run_onnx_runtime(model, spec, tensor), compiled)
    assert report.ok, report.failures
