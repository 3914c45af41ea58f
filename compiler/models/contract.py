"""Which ONNX models we accept (specs/model-contract.md) and what we record about them at import."""

from __future__ import annotations

from typing import Any

import onnx

from compiler.api.errors import ValidationException
from compiler.api.validation import check_value
from compiler.models.fixed_batch import check_fixed_batch
from compiler.models.graph_preprocessing import InputPreprocessing, input_preprocessing
from edge_agent.bundle.model_spec import DEFAULT_LABELS, ModelSpec

ANOMALIB_ROLES = ("pred_score", "anomaly_map", "pred_mask", "pred_label")


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    """Static dims as ints, symbolic as their name, unknown as None."""
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(d.dim_param or None)
    return dims


def _refuse(message: str) -> ValidationException:
    return ValidationException(f"The model does not fit the model contract: {message}")


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initialisers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initialisers]


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inputs = _graph_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise _refuse(f"expected exactly one image input, found {len(inputs)} ({names}).")
    image = inputs[0]
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        elem = onnx.TensorProto.DataType.Name(image.type.tensor_type.elem_type)
        raise _refuse(f"input '{image.name}' must be float32 (NCHW RGB), found {elem}.")
    dims = _dims(image)
    if len(dims) != 4 or dims[1] != 3:
        raise _refuse(f"input '{image.name}' must be NCHW with 3 channels (RGB), found shape {dims}.")
    return image


def _input_size(image: onnx.ValueInfoProto, metadata: dict[str, Any], preprocessing: InputPreprocessing) -> list[int]:
    """The [H, W] to compile for: the metadata's, else the input's static size, else the size the graph itself
    resizes its input to first (anomalib 2.x exports with dynamic height and width)."""
    dims = _dims(image)
    static_hw = [d if isinstance(d, int) else None for d in dims[2:]]
    size = metadata.get("input_size")
    if size is not None:
        if any(s is not None and s != m for s, m in zip(static_hw, size, strict=True)):
            raise _refuse(f"metadata input_size {size} contradicts the model's input shape {dims}.")
        return list(size)
    if None not in static_hw:
        return static_hw
    if preprocessing.resize_to is not None:
        return preprocessing.resize_to
    raise _refuse(
        f"input '{image.name}' has dynamic height/width {dims[2:]} and the graph does not resize it to a fixed "
        'size; give the size to compile for with "input_size": [H, W] in the model metadata file.'
    )


def _normalisation(kind: str, roles: dict[str, str], preprocessing: InputPreprocessing, metadata: dict) -> dict:
    """Whether the agent normalises the input (ImageNet mean/std by default): not when the graph does it itself.
    anomalib 2.x's outputs (pred_label) without the normalisation its exports carry are ambiguous: refused."""
    if "normalize" in metadata:
        return {}
    if preprocessing.normalises:
        return {"normalize": False}
    if kind == "anomalib" and "pred_label" in roles:
        raise _refuse(
            "its outputs follow anomalib 2.x's convention (pred_label), whose exports normalise the image inside "
            "the graph, but this graph does not begin with a mean/std normalisation, so it is not clear what input "
            'it expects; say so in the model metadata file: "normalize": false when it takes the image as 0..1 '
            'RGB, or "normalize": true with "mean" and "std" when it wants it normalised.'
        )
    return {}


def _outputs_by_name(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    return {o.name: _dims(o) for o in model.graph.output}


def detect_model_type(model: onnx.ModelProto) -> str:
    """anomalib when `pred_score` is an output; classification for one [N,K] output; segmentation for [N,K,h,w]."""
    outputs = _outputs_by_name(model)
    if "pred_score" in outputs:
        return "anomalib"
    ranks = sorted(len(d) for d in outputs.values())
    if ranks == [2]:
        return "classification"
    if 4 in ranks and len(outputs) <= 2:
        return "segmentation"
    shown = ", ".join(f"{n} {d}" for n, d in outputs.items())
    raise _refuse(
        f"cannot tell the model type from its outputs ({shown}). Expected anomalib outputs (pred_score, "
        "optional anomaly_map/pred_mask), one [N,2] classification output, or one [N,K,h,w] segmentation "
        "output; pass --model-type to say which."
    )


def _anomalib_outputs(outputs: dict[str, list]) -> dict[str, str]:
    if "pred_score" not in outputs:
        raise _refuse(f"anomalib models need a 'pred_score' output; found {sorted(outputs)}.")
    score = outputs["pred_score"]
    if len(score) not in (1, 2) or (len(score) == 2 and score[1] != 1):
        raise _refuse(f"'pred_score' must be [N] or [N,1], found {score}.")
    for name in ("anomaly_map", "pred_mask"):
        if name in outputs and (len(outputs[name]) != 4 or outputs[name][1] != 1):
            raise _refuse(f"'{name}' must be [N,1,h,w], found {outputs[name]}.")
    return {role: role for role in ANOMALIB_ROLES if role in outputs}


def _classification_outputs(outputs: dict[str, list], metadata: dict[str, Any]) -> dict[str, str]:
    if len(outputs) != 1:
        raise _refuse(f"classification models have exactly one output, found {len(outputs)}: {sorted(outputs)}.")
    ((name, dims),) = outputs.items()
    classes = dims[1] if len(dims) == 2 else None
    if len(dims) != 2:
        raise _refuse(f"the classification output '{name}' must be [N,K], found {dims}.")
    index = metadata.get("anomalous_class_index", 1)
    if isinstance(classes, int) and index >= classes:
        raise _refuse(f"anomalous_class_index {index} is out of range for output '{name}' with {classes} classes.")
    return {"class_scores": name}


def _segmentation_outputs(outputs: dict[str, list], metadata: dict[str, Any]) -> dict[str, str]:
    maps = [n for n, d in outputs.items() if len(d) == 4]
    if len(maps) != 1:
        raise _refuse(f"segmentation models have exactly one [N,K,h,w] output, found {len(maps)}: {maps}.")
    roles = {"class_map": maps[0]}
    classes = outputs[maps[0]][1]
    labels = metadata.get("labels")
    if labels is None:
        raise _refuse('segmentation models need "labels" (background first, with a hex colour each) in the metadata.')
    if isinstance(classes, int) and classes != len(labels):
        raise _refuse(f"output '{maps[0]}' has {classes} classes but the metadata lists {len(labels)} labels.")
    others = [n for n in outputs if n != maps[0]]
    score_name = metadata.get("score_output") or (others[0] if others else None)
    if score_name is not None:
        if score_name not in outputs:
            raise _refuse(f"score_output '{score_name}' is not an output of the model ({sorted(outputs)}).")
        roles["image_score"] = score_name
    return roles


def _classification_kind(model: onnx.ModelProto, output_name: str) -> str:
    producers = [n for n in model.graph.node if output_name in n.output]
    return "probabilities" if producers and producers[0].op_type == "Softmax" else "logits"


def inspect_model(model: onnx.ModelProto, model_type: str | None, metadata: dict[str, Any]) -> ModelSpec:
    """Check `model` against the contract and return its spec; ValidationException says what does not fit."""
    check_value(metadata, "ModelMetadata", "modelMetadata")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ValidationException(f"The model file is not a valid ONNX model: {exc}") from exc
    image = _image_input(model)
    preprocessing = input_preprocessing(model, image.name)
    input_size = _input_size(image, metadata, preprocessing)
    batch = _dims(image)[0]
    if isinstance(batch, int) and batch != 1:
        check_fixed_batch(model, image.name, batch, input_size)
    kind = model_type or detect_model_type(model)
    outputs = _outputs_by_name(model)
    if kind == "anomalib":
        roles = _anomalib_outputs(outputs)
    elif kind == "classification":
        roles = _classification_outputs(outputs, metadata)
    else:
        roles = _segmentation_outputs(outputs, metadata)
    labels = metadata.get("labels", DEFAULT_LABELS)
    if labels[0]["name"] != "background":
        raise _refuse(f"the first label must be 'background', found '{labels[0]['name']}'.")
    extra = {k: v for k, v in metadata.items() if k not in ("input_size", "labels", "score_output")}
    if kind == "classification":
        extra.setdefault("classification_output", _classification_kind(model, roles["class_scores"]))
    extra.update(_normalisation(kind, roles, preprocessing, metadata))
    return ModelSpec(
        model_type=kind,
        input_name=image.name,
        input_size=input_size,
        outputs=roles,
        labels=[dict(x) for x in labels],
        threshold_configured="threshold" in metadata,
        **extra,
    )
