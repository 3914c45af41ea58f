"""Models exported with a fixed batch above 1 (anomalib's PatchCore export pins it to 2): accepted when the graph
also runs at batch 1 and gives each sample the outputs it gives it in a full batch, checked with ONNX Runtime;
refused with the re-export command otherwise. The pipeline compiles every model at batch 1."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from compiler.api.errors import ValidationException


def _at_batch(model: onnx.ModelProto, input_name: str, batch: int, size: list[int]) -> onnx.ModelProto:
    """A copy whose image input is [batch, 3, H, W] and whose outputs' batch dimension is left open."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        if value.name == input_name:
            for dim, length in zip(value.type.tensor_type.shape.dim, [batch, 3, *size], strict=True):
                dim.Clear()
                dim.dim_value = length
    for value in copy.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    return copy


def _run(model: onnx.ModelProto, input_name: str, tensor: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the batch-1 attempt may fail by design; its error is reported below
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: tensor})


def _same(full: np.ndarray, single: np.ndarray) -> bool:
    if single.shape != full[:1].shape:
        return False
    if full.dtype == np.bool_:
        return bool(np.array_equal(full[:1], single))
    return bool(np.allclose(full[:1], single, rtol=1e-4, atol=1e-5))


def check_fixed_batch(model: onnx.ModelProto, input_name: str, batch: int, size: list[int]) -> None:
    """Accept a fixed batch > 1 only when sample 0 alone (batch 1) gets what it gets in a batch of `batch`."""
    samples = np.random.default_rng(0).random((batch, 3, *size), dtype=np.float32)
    reexport = (
        f"input '{input_name}' has a fixed batch of {batch}, and the graph does not give a single image the "
        "outputs it gives it in that batch (its shapes are specialised to the batch; anomalib's PatchCore export "
        f'does this). Export it again with a batch of 1: with anomalib, engine.export(model, "onnx", '
        f'input_size=({size[0]}, {size[1]}), onnx_kwargs={{"dynamic_axes": {{}}}}); with torch.onnx.export, '
        "a batch-1 example input and no dynamic batch."
    )
    try:
        full = _run(_at_batch(model, input_name, batch, size), input_name, samples)
        single = _run(_at_batch(model, input_name, 1, size), input_name, samples[:1])
    except Exception as exc:  # ONNX Runtime's errors: a shape specialised to the batch fails to run at 1
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ValidationException(f"The model does not fit the model contract: {reexport} ({first_line})") from None
    if not all(_same(f, s) for f, s in zip(full, single, strict=True)):
        raise ValidationException(f"The model does not fit the model contract: {reexport}")
