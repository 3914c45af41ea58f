"""A loaded model: verified bundle → preprocessing → engine → result mapping."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from edge_agent.bundle.reader import Bundle
from edge_agent.engines.choice import Engine, EngineChoice, EngineFactory, choose_engine
from edge_agent.models.preprocess import Preprocessor
from edge_agent.models.results import Detection, detect


class LoadedModel:
    """Runs one bundle on RGB images with one engine; one instance per thread."""

    def __init__(self, bundle: Bundle, engine: Engine) -> None:
        self.bundle = bundle
        self.engine = engine
        self.preprocess = Preprocessor.from_spec(bundle.spec)
        self._input = self.preprocess.new_tensor()

    @classmethod
    def best(cls, factory: EngineFactory) -> tuple[LoadedModel, EngineChoice]:
        """The model on the best engine that runs here and passes the golden check (engines.choose_engine)."""
        choice, engine = choose_engine(factory)
        return cls(factory.bundle, engine), choice

    def detect(self, rgb: np.ndarray, threshold: float | None = None, with_mask: bool = False) -> Detection:
        """Score one (H, W, 3) RGB image; with `with_mask`, also its mask at the image's own size.
        The detection carries the time spent in the engine alone (`inference_ms`)."""
        tensor = self.preprocess(rgb, out=self._input)
        started = time.perf_counter()
        outputs = self.engine.run(tensor)
        inference_ms = (time.perf_counter() - started) * 1000
        mask_size = (rgb.shape[1], rgb.shape[0]) if with_mask else None
        return replace(detect(self.bundle.spec, outputs, threshold, mask_size), inference_ms=inference_ms)

    def close(self) -> None:
        self.engine.close()
