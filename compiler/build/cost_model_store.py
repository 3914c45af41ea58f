"""The tuning cost model kept beside a target's records, so that each search starts from what the searches before
it learnt (of other models and shapes too) instead of from random candidates.

MetaSchedule's XGBoost model predicts which candidates of a kernel run fastest from features of their loop nests;
saved with the data it was trained on, a later search on the same target ranks its first candidates with it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COST_MODEL_FILE = "cost_model.tar"

log = logging.getLogger(__name__)


@contextmanager
def _booster_format_notes_silenced() -> Iterator[None]:
    """MetaSchedule names the booster file model.bin; XGBoost warns that it guesses (and uses) UBJSON for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(Unknown file format|UBJSON)", category=UserWarning)
        yield


def load_cost_model(folder: Path, threads: int) -> Any:
    """The cost model saved in `folder`, or a fresh one where none was saved or it cannot be read."""
    import tvm.s_tir.meta_schedule as ms

    model = ms.cost_model.XGBModel(num_tuning_cores=threads, tree_method="auto")
    path = folder / COST_MODEL_FILE
    if path.exists():
        try:
            with _booster_format_notes_silenced():
                model.load(str(path))
        except Exception as exc:  # a file from another TVM or XGBoost version: learn again rather than fail
            log.warning("Starting a fresh tuning cost model: %s could not be read (%s).", path, exc)
            model = ms.cost_model.XGBModel(num_tuning_cores=threads, tree_method="auto")
    return model


def save_cost_model(model: Any, folder: Path) -> None:
    """Save `model` in `folder` once it has learnt something; written to a file of its own and renamed, so a crash
    mid-write leaves the previous file whole and two searches saving at once do not mix their writes (the last
    one's model is kept)."""
    if getattr(model, "booster", None) is None:
        return
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{COST_MODEL_FILE}.", delete=False) as handle:
        partial = Path(handle.name)
    try:
        with _booster_format_notes_silenced():
            model.save(str(partial))
        os.replace(partial, folder / COST_MODEL_FILE)
    finally:
        partial.unlink(missing_ok=True)
