"""Reading the ONNX file a user gives to create-model, weights in external data files included.

torch ≥ 2 and anomalib write large weights to `model.onnx.data` beside `model.onnx`. Such data is accepted only
from files inside the model's own folder (no absolute paths, no `..`), within their sizes, and the stored model
is made self-contained, so later steps never read anything from the user's folder again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from compiler.api.errors import ValidationException
from compiler.models.onnx_graphs import all_graphs

# Protocol buffers cannot hold a message of 2 GiB or more; a self-contained model must stay below that.
MAX_MODEL_BYTES = (2 << 30) - (64 << 20)


@dataclass(frozen=True)
class ModelFile:
    """The parsed model (all weights inside) and the bytes to store for it."""

    model: onnx.ModelProto
    data: bytes


def _refuse(path: Path, rule: str) -> ValidationException:
    return ValidationException(f"Value '{path}' at 'modelFile' failed to satisfy constraint: {rule}")


def _external_size(path: Path, tensor: onnx.TensorProto) -> int:
    """Check one tensor's external data entry against the rules; returns the bytes it adds."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    folder = path.parent.resolve()
    data_file = (folder / location).resolve()
    if not location or Path(location).is_absolute() or ".." in Path(location).parts:
        raise _refuse(
            path,
            f"tensor '{tensor.name}' keeps its data at {location!r}; external data must be a file "
            "beside the model (a relative name without '..')",
        )
    if not data_file.is_relative_to(folder) or not data_file.is_file():
        raise _refuse(
            path,
            f"tensor '{tensor.name}' keeps its data in {location!r}, which is not a file beside "
            f"the model in {folder}; copy it there with the model",
        )
    offset, length = int(info.get("offset", 0)), info.get("length")
    available = data_file.stat().st_size - offset
    size = available if length is None else int(length)
    if offset < 0 or size < 0 or size > available:
        raise _refuse(
            path,
            f"tensor '{tensor.name}' wants bytes {offset}..{offset + size} of {location!r}, which "
            f"holds {data_file.stat().st_size}: the data file is truncated or belongs to another export",
        )
    return size


def read_model_file(path: Path) -> ModelFile:
    """Parse the model at `path`, pulling in external data beside it; ValidationException names the rule broken."""
    if not path.is_file():
        raise _refuse(path, "the file does not exist or is not a regular file.")
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except OSError as exc:
        raise _refuse(path, f"the file cannot be read ({exc.strerror}).") from None
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ValidationException(f"The model file '{path}' could not be read as ONNX: {exc}") from exc
    external = [t for t in _all_tensors(model) if uses_external_data(t)]
    if not external:
        return ModelFile(model, data)
    total = len(data) + sum(_external_size(path, t) for t in external)
    if total > MAX_MODEL_BYTES:
        raise _refuse(
            path,
            f"with its external data the model is {total / 2**30:.2f} GiB; at most "
            f"{MAX_MODEL_BYTES / 2**30:.2f} GiB fit in one ONNX file.",
        )
    load_external_data_for_model(model, str(path.parent))
    return ModelFile(model, model.SerializeToString())


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initialisers and attribute tensors (Constant nodes) of every graph of the model."""
    tensors: list[onnx.TensorProto] = []
    for graph in all_graphs(model):
        tensors += graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
    return tensors
