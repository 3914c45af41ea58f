"""A loaded model: verified bundle → preprocessing → compiled module → result mapping."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_agent.bundle import Bundle, BundleError, unpack_bundle, verify_bundle
from edge_agent.output_parity import compare
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
        self.module = CompiledModule(bundle.library, bundle.output_names, bundle.cubin)
        self._input = self.preprocess.new_tensor()

    def detect(self, rgb: np.ndarray, threshold: float | None = None, with_mask: bool = False) -> Detection:
        """Score one (H, W, 3) RGB image; with `with_mask`, also its mask at the image's own size.
        The detection carries the time spent in the compiled module alone (`inference_ms`)."""
        tensor = self.preprocess(rgb, out=self._input)
        started = time.perf_counter()
        outputs = self.module.run(tensor)
        inference_ms = (time.perf_counter() - started) * 1000
        mask_size = (rgb.shape[1], rgb.shape[0]) if with_mask else None
        return replace(detect(self.bundle.spec, outputs, threshold, mask_size), inference_ms=inference_ms)

    def check_golden(self) -> None:
        """Run the bundle's golden input and compare with the outputs recorded at packaging time.

        Raises BundleError when an output is off by more than the manifest's tolerance: the module
        computes something different on this device than it did where it was packaged.
        """
        golden = self.bundle.manifest["golden"]
        expected = {name: np.load(self.bundle.root / relative) for name, relative in golden["outputs"].items()}
        outputs = self.module.run(np.load(self.bundle.root / golden["input"]))
        report = compare(expected, outputs, golden["atol"], golden["rtol"], golden["max_mask_mismatch"])
        if not report.ok:
            raise BundleError("golden check failed: " + "; ".join(report.failures))
