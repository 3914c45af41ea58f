"""A loaded model: verified bundle → preprocessing → compiled module → result mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.bundle import Bundle, unpack_bundle, verify_bundle
from edge_agent.preprocess import Preprocessor
from edge_agent.results import Detection, detect
from edge_agent.tvm_runtime import CompiledModule


def open_bundle(path: Path, unpack_dir: Path) -> Bundle:
    """Verify a bundle folder, or unpack a bundle zip into `unpack_dir` first."""
    if path.is_file():
        return verify_bundle(unpack_bundle(path, unpack_dir))
    return verify_bundle(path)


class LoadedModel:
    """Runs one bundle on RGB images; one instance per thread."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.preprocess = Preprocessor.from_spec(bundle.spec)
        self.module = CompiledModule(bundle.library, bundle.output_names)

    def infer(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        return self.module.run(self.preprocess(rgb))

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> Detection:
        return detect(self.bundle.spec, self.infer(rgb), threshold)
