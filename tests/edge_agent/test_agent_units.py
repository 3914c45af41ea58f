"""The agent's domain pieces without a server: configuration rules, registry files, shared-memory checks,
and the mapping of segmentation and classification outputs to results."""

from __future__ import annotations

from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.model_spec import ModelSpec
from edge_agent.components.deployments import Registration
from edge_agent.components.registrations import RegistryError, read_registry, remove_registration, write_registration
from edge_agent.config import AgentConfig, ConfigError, load_config_file, socket_path
from edge_agent.errors import InvalidArgument, ModelOutputError
from edge_agent.models.results import detect, paint
from edge_agent.serving.image_input import check_dimensions, image_from_bytes
from edge_agent.serving.shared_memory import SHM_ROOT, SegmentRef, read_image, write_mask
from tests.models import minimal_manifest


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Sockt": "unix:///tmp/a.sock"}, "unknown configuration key(s) Sockt"),
        ({"Socket": "tcp://localhost:1"}, "must be a Unix socket address"),
        ({"Socket": "unix:relative.sock"}, "must name an absolute path"),
        ({"Socket": "unix:///" + "a" * 120}, "longer than the 107 bytes"),
        ({"Concurrency": 0}, "Concurrency must be a whole number from 1 to 64, got 0"),
        ({"Concurrency": True}, "Concurrency must be a whole number"),
        ({"MaxQueuedRequests": 2.5}, "MaxQueuedRequests must be a whole number from 1 to 10000, got 2.5"),
        ({"MemoryBudgetMiB": -1}, "MemoryBudgetMiB must be a whole number from 0"),
        ({"Models": []}, "Models must map component names to settings"),
        ({"Models": {"m": 0.5}}, "Models.m must be a mapping like {Threshold: 0.6}"),
        ({"Models": {"m": {"Treshold": 0.5}}}, "Models.m: unknown key(s) Treshold"),
        ({"Models": {"m": {"Threshold": 1.5}}}, "Models.m.Threshold must be a number from 0 to 1, got 1.5"),
    ],
)
def test_configuration_rules(data, message) -> None:
    with pytest.raises(ConfigError) as error:
        AgentConfig.from_mapping(data)
    assert message in str(error.value)


def test_configuration_values_and_file(tmp_path) -> None:
    config = AgentConfig.from_mapping(
        {"Socket": "unix:/tmp/x.sock", "Concurrency": 2.0, "Models": {"m": {"Threshold": 1}}, "accessControl": {}}
    )
    assert (config.socket, config.concurrency, config.thresholds) == ("unix:/tmp/x.sock", 2, {"m": 1.0})
    assert socket_path("unix:///tmp/a.sock") == socket_path("unix:/tmp/a.sock") == Path("/tmp/a.sock")
    (tmp_path / "c.yaml").write_text("Concurrency: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        load_config_file(tmp_path / "c.yaml")
    assert load_config_file(_write(tmp_path / "empty.yaml", "")) == AgentConfig()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_registry_writes_atomically_and_deregisters_only_its_own_version(tmp_path) -> None:
    registry = tmp_path / "registry"
    write_registration(registry, Registration("com.example.A", "1.0.0", "arn:a", tmp_path / "v1"))
    write_registration(registry, Registration("com.example.A", "2.0.0", "arn:a", tmp_path / "v2"))
    assert sorted(p.name for p in registry.iterdir()) == ["com.example.A.json"]
    assert read_registry(registry)["com.example.A"].component_version == "2.0.0"
    assert not remove_registration(registry, "com.example.A", "1.0.0")
    assert remove_registration(registry, "com.example.A", "2.0.0")
    assert read_registry(registry) == {}
    with pytest.raises(RegistryError, match="not a Greengrass component name"):
        write_registration(registry, Registration("../escape", "1.0.0", "arn:a", tmp_path))
    _write(registry / "broken.json", "{")
    assert read_registry(registry) == {}


def test_image_checks() -> None:
    check_dimensions(64, 4096)
    with pytest.raises(InvalidArgument, match=r"bitmap\.height is 0"):
        check_dimensions(64, 0)
    image = image_from_bytes(64, 65, bytes(range(256)) * 48 + bytes(192))
    assert image.shape == (65, 64, 3) and image[0, 0].tolist() == [0, 1, 2]


def test_shared_memory_reads_exact_buffers_and_writes_masks() -> None:
    shm = shared_memory.SharedMemory(create=True, size=64 * 64 * 3 + 10)
    try:
        name = "/" + shm.name.lstrip("/")
        shm.buf[10 : 10 + 12288] = bytes(range(256)) * 48
        image = read_image(SegmentRef(name, 12288, 10), "bitmap.shared_memory_handle", 64, 64)
        assert image.reshape(-1)[:3].tolist() == [0, 1, 2]
        with pytest.raises(InvalidArgument, match="lies beyond the end"):
            read_image(SegmentRef(name, 12288, 11), "bitmap.shared_memory_handle", 64, 64)
        mask = np.full((64, 64, 3), 7, np.uint8)
        assert write_mask(SegmentRef(name, 12288, 0), "m", mask) == 12288
        assert bytes(shm.buf[:3]) == b"\x07\x07\x07"
        with pytest.raises(InvalidArgument, match=r"m\.size is 100 bytes"):
            write_mask(SegmentRef(name, 100, 0), "m", mask)
    finally:
        shm.close()
        shm.unlink()


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path) -> None:
    import zipfile

    from edge_agent.bundle.reader import BundleError, unpack_bundle

    bomb = tmp_path / "model.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("model.so", bytes(96 << 20))  # 96 MiB of zeros: ~100 KB compressed
    destination = tmp_path / "unpacked"
    destination.mkdir()
    with pytest.raises(BundleError, match=r"would unpack to 96 MiB from 0\.1 MiB"):
        unpack_bundle(bomb, destination)
    assert list(destination.iterdir()) == []
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(1001):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(BundleError, match="1001 entries; a bundle has at most 1000"):
        unpack_bundle(many, destination)
    assert list(destination.iterdir()) == []


def test_manifest_paths_outside_the_bundle_are_refused_before_anything_is_read(tmp_path) -> None:
    import json

    from edge_agent.bundle.reader import BundleError, verify_bundle

    secret = tmp_path / "secret"
    secret.write_text("root:x:0")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("../secret", str(secret), "sub/../../secret"):
        (bundle / "manifest.json").write_text(json.dumps({**minimal_manifest(), "files": {name: "0" * 64}}))
        with pytest.raises(BundleError, match="lies outside the bundle") as error:
            verify_bundle(bundle)
        assert "sha256" not in str(error.value)  # no digest of the file outside is ever computed or shown


def _bundle_zip(path, manifest, *, encrypted: bool = False, method: int | None = None) -> None:
    import json
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
    # Flags (bit 0: encrypted) and compression method, patched into the local and the central header.
    data = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flags_at
        if encrypted:
            data[at] |= 0x1
        if method is not None:
            data[at + 2 : at + 4] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_malformed_bundles_in_the_models_folder_are_listed_as_failed_and_the_rest_served(tmp_path) -> None:
    import logging

    from edge_agent.components.models_folder import ModelsFolder
    from edge_agent.problem_log import ProblemLog

    good = minimal_manifest()
    folder = tmp_path / "models"
    folder.mkdir()
    _bundle_zip(folder / "good.zip", good)
    _bundle_zip(folder / "component-string.zip", {**good, "component": "com.example.X"})
    _bundle_zip(folder / "manifest-list.zip", [good])
    _bundle_zip(folder / "huge-name.zip", {**good, "component": {"name": "x" * 5000, "version": "1"}})
    _bundle_zip(folder / "encrypted.zip", good, encrypted=True)
    _bundle_zip(folder / "compression.zip", good, method=99)
    (folder / "not-a-zip.zip").write_bytes(b"hello")
    registrations, failures = ModelsFolder(folder, tmp_path / "unpacked", ProblemLog(logging.getLogger())).scan()
    assert list(registrations) == ["com.example.Good"]
    expected = {
        "component-string": "'component' must be an object, not str",
        "manifest-list": "must hold a JSON object",
        "huge-name": "is not a Greengrass component name",
        "encrypted": "encrypted",
        "compression": "compression method",
        "not-a-zip": "not a complete zip archive",
    }
    assert sorted(failures) == sorted(expected)
    for name, words in expected.items():
        assert failures[name].bundle is None and words in failures[name].error, failures[name].error


def test_padded_rows_are_read_without_their_padding() -> None:
    """GStreamer pads RGB rows to 4 bytes: width 225 → 676-byte rows, size = 676 × height."""
    width, height, stride = 225, 70, 676
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    padded = np.zeros((height, stride), np.uint8)
    padded[:, : width * 3] = image.reshape(height, -1)
    padded[:, width * 3 :] = 0xEE  # padding that must not leak into the image
    shm = shared_memory.SharedMemory(create=True, size=padded.nbytes)
    try:
        name = "/" + shm.name.lstrip("/")
        shm.buf[: padded.nbytes] = padded.tobytes()
        read = read_image(SegmentRef(name, padded.nbytes, 0), "bitmap.shared_memory_handle", width, height)
        assert np.array_equal(read, image)
        with pytest.raises(InvalidArgument, match="row stride ≥ width\\*3 = 675 bytes"):
            read_image(SegmentRef(name, 674 * height, 0), "bitmap.shared_memory_handle", width, height)
        with pytest.raises(InvalidArgument, match="size is 47321 bytes"):
            read_image(SegmentRef(name, 47321, 0), "bitmap.shared_memory_handle", width, height)
    finally:
        shm.close()
        shm.unlink()


def test_a_fifo_named_as_a_segment_is_refused_without_blocking(tmp_path) -> None:
    """open() of a FIFO for reading blocks until a writer comes; the agent must answer at once instead."""
    import os
    import threading

    fifo = SHM_ROOT / f"lookout-test-fifo-{os.getpid()}"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_image(SegmentRef("/" + fifo.name, 12288, 0), "b", 64, 64)
        except InvalidArgument as exc:
            outcome.append(exc)

    try:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "read_image blocked on the FIFO"
        assert "is not a shared-memory segment" in str(outcome[0])
    finally:
        fifo.unlink()


def _spec(**fields) -> ModelSpec:
    """A stored spec as the agent reads it from a manifest (validated by the contract)."""
    return ModelSpec.from_dict({"input_name": "input", "input_size": [4, 4], **fields})


SEGMENTATION = dict(
    model_type="segmentation",
    outputs={"class_map": "classes"},
    threshold=0.5,
    labels=[
        {"name": "background", "color": "#ffffff"},
        {"name": "scratch", "color": "#FF0000"},
        {"name": "dent", "color": "#00FF00"},
    ],
)


def test_segmentation_mask_areas_and_colours() -> None:
    logits = np.zeros((1, 3, 4, 4), np.float32)
    logits[0, 0] = 5.0
    logits[0, 1, 0, :2] = 10.0  # 2 of 16 cells are scratch; no dent
    result = detect(_spec(**SEGMENTATION), {"classes": logits}, mask_size=(8, 8))
    assert [(a.name, a.fraction, a.hex_color) for a in result.anomalies] == [
        ("background", 14 / 16, "#FFFFFF"),
        ("scratch", 2 / 16, "#FF0000"),
    ]
    assert result.mask.shape == (8, 8, 3)
    assert result.mask[0, 0].tolist() == [255, 0, 0] and result.mask[7, 7].tolist() == [255, 255, 255]
    assert result.is_anomalous and result.anomaly_score == pytest.approx(1 - np.exp(5) / (np.exp(5) + np.exp(10) + 1))


def test_an_anomalib_models_own_decisions_are_used_unless_a_threshold_is_configured() -> None:
    spec = {
        "model_type": "anomalib",
        "outputs": {r: r for r in ("pred_score", "pred_label", "anomaly_map", "pred_mask")},
        "threshold": 0.5,
        "threshold_configured": False,
        "labels": [{"name": "background", "color": "#FFFFFF"}, {"name": "anomaly", "color": "#FF0000"}],
    }
    heat = np.full((1, 1, 4, 4), 0.6, np.float32)  # above 0.5 everywhere, but the model's pixel threshold is 0.7
    own_mask = np.zeros((1, 1, 4, 4), bool)
    own_mask[0, 0, 0, 0] = True
    outputs = {"pred_score": np.array([0.55], np.float32), "pred_label": np.array([False]), "anomaly_map": heat,
               "pred_mask": own_mask}  # fmt: skip
    own = detect(_spec(**spec), outputs, mask_size=(4, 4))
    assert not own.is_anomalous and own.anomaly_threshold == 0.5 and own.confidence == pytest.approx(0.45)
    assert [(a.name, a.fraction) for a in own.anomalies] == [("background", 15 / 16), ("anomaly", 1 / 16)]
    assert detect(_spec(**spec), outputs, threshold=0.55).is_anomalous  # the agent's configured threshold wins
    assert detect(_spec(**{**spec, "threshold_configured": True}), outputs).is_anomalous  # and so does the metadata's
    del spec["threshold_configured"]
    assert detect(_spec(**spec), outputs).is_anomalous  # a bundle from before the field: decided by its threshold
    spec["threshold_configured"] = False
    del spec["outputs"]["pred_label"]
    assert detect(_spec(**spec), outputs).is_anomalous  # no decision of its own: score >= 0.5


def test_classification_has_no_mask_and_nan_scores_are_refused() -> None:
    spec = {
        "model_type": "classification",
        "outputs": {"class_scores": "p"},
        "threshold": 0.5,
        "classification_output": "probabilities",
        "anomalous_class_index": 1,
    }
    result = detect(_spec(**spec), {"p": np.array([[0.7, 0.3]], np.float32)}, mask_size=(64, 64))
    assert (result.is_anomalous, result.mask, result.anomalies) == (False, None, [])
    assert result.confidence == pytest.approx(0.7)
    with pytest.raises(ModelOutputError, match="non-finite"):
        detect(_spec(**spec), {"p": np.array([[np.nan, np.nan]], np.float32)})


@pytest.mark.parametrize(
    "colours",
    [
        ["#FFFFFF", "#FF0000"],
        ["#000000", "#00FF7F"],
        ["#123456", "#ABCDEF"],
        ["#000000", "#FF0000", "#00FF00", "#0000FF", "#808080"],
    ],
)
def test_masks_are_painted_in_the_label_colours(colours: list[str]) -> None:
    spec = _spec(
        model_type="segmentation",
        outputs={"class_map": "classes"},
        labels=[{"name": f"label{i}", "color": c} for i, c in enumerate(colours)],
    )
    labels = np.random.default_rng(len(colours)).integers(0, len(colours), (67, 91), dtype=np.uint8)
    mask, areas = paint(labels, spec)
    palette = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours], np.uint8)
    assert mask.shape == (67, 91, 3) and np.array_equal(mask, palette[labels])
    assert [a.fraction for a in areas] == pytest.approx([np.mean(labels == i) for i in range(len(colours))])


def test_the_contract_refuses_newer_editions_and_names_what_is_wrong(tmp_path) -> None:
    import json
    import re

    from edge_agent.bundle.manifest import FORMAT_VERSION, Manifest
    from edge_agent.bundle.reader import BundleError, read_manifest

    cases = {
        "newer": ({"format_version": FORMAT_VERSION + 1}, f"edition {FORMAT_VERSION + 1} and this agent reads up to"),
        "no golden": ({"golden": None}, "'golden' must be an object, not NoneType"),
        "bad tolerance": ({"golden": {**minimal_manifest()["golden"], "atol": "x"}}, "'golden.atol' must be a number"),
        "no outputs": ({"outputs": []}, "'outputs' must be a non-empty list of names"),
        "no arch": ({"target": {}}, "'target.arch' must be a non-empty string"),
        "no engines": ({"engines": None}, "'engines' must be a non-empty list of objects"),
        "sizes of other files": ({"sizes": {"x.bin": 3}}, "'sizes' must map files listed in 'files'"),
    }
    spec = minimal_manifest()["model"]["spec"]
    spec_cases = {
        "no spec": (None, "'model.spec': must be an object, not NoneType"),
        "missing input": ({k: v for k, v in spec.items() if k != "input_name"}, "'input_name' is missing"),
        "unknown type": ({**spec, "model_type": "detector"}, "'model_type' must be one of anomalib, classification"),
        "bad size": ({**spec, "input_size": [0, 8]}, "'input_size' must be [height, width] in pixels"),
        "zero std": ({**spec, "std": [1, 0, 1]}, "'std' must not hold a zero"),
        "newer field": ({**spec, "gamma": 2.2}, "unknown field 'gamma': re-package the model"),
    }
    for value, words in spec_cases.values():
        cases[words] = ({"model": {"arn": "arn:x", "spec": value}}, words)
    for change, words in cases.values():
        (tmp_path / "manifest.json").write_text(json.dumps({**minimal_manifest(), **change}))
        with pytest.raises(BundleError, match=re.escape(words)):
            read_manifest(tmp_path)
    # Edition 1 (before `engines` and `format_version`): its one engine comes from compiler.library.
    legacy = {k: v for k, v in minimal_manifest().items() if k not in ("engines", "format_version")}
    legacy["compiler"] = {"library": "model.so", "device_code": None}
    manifest = Manifest.from_json(legacy)
    assert manifest.format_version == 1 and manifest.engines == [
        {"kind": "tvm-cpu", "library": "model.so", "device_code": None}
    ]
    assert Manifest.from_json(json.loads(json.dumps(minimal_manifest()))).to_json() == minimal_manifest()
    # Edition 2 from before `sizes` (packaged by earlier releases): read, with nothing to check sizes against.
    earlier = {k: v for k, v in minimal_manifest(files={"model.so": "0" * 64}).items() if k != "sizes"}
    assert Manifest.from_json(earlier).sizes == {}
