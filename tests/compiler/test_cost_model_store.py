"""The tuning cost model kept beside a target's records: unreadable files start a fresh model, and saving never
leaves a half-written file in place."""

from __future__ import annotations

import logging
from pathlib import Path

from compiler.build.cost_model_store import COST_MODEL_FILE, load_cost_model, save_cost_model


def test_an_unreadable_cost_model_starts_a_fresh_one_and_says_so(tmp_path: Path, caplog) -> None:
    (tmp_path / COST_MODEL_FILE).write_bytes(b"not a tar archive")
    with caplog.at_level(logging.WARNING):
        model = load_cost_model(tmp_path, 2)
    assert model.data_size == 0 and model.booster is None
    assert "Starting a fresh tuning cost model" in caplog.text and COST_MODEL_FILE in caplog.text


def test_a_model_that_learnt_nothing_is_not_saved_over_one_that_did(tmp_path: Path) -> None:
    (tmp_path / COST_MODEL_FILE).write_bytes(b"an earlier model")
    save_cost_model(load_cost_model(tmp_path / "empty", 2), tmp_path)
    assert (tmp_path / COST_MODEL_FILE).read_bytes() == b"an earlier model"
    assert [p.name for p in tmp_path.iterdir()] == [COST_MODEL_FILE]
