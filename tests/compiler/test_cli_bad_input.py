"""Every `lookout-edge` command answers bad input with one clear line on stderr, its documented exit code
(252: bad command line or input, 254: the service refused the request) and never a traceback."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from compiler.api.cli import main
from compiler.api.exit_codes import EXIT_SERVICE_ERROR, EXIT_USAGE
from tests.agent_harness import REPO
from tests.models import classifier, minimal_manifest

Setup = Callable[[Path], list[str]]


def _tiny_bundle(root: Path, wrong_digest: bool = False, truncated: bool = False) -> Path:
    """A bundle folder with a manifest listing one file (its digest or its size wrong when asked)."""
    root.mkdir(parents=True)
    content = b"not really a library"
    (root / "model.so").write_bytes(content[:-4] if truncated else content)
    digest = hashlib.sha256(b"something else" if wrong_digest else content).hexdigest()
    manifest = {**minimal_manifest(files={"model.so": digest}), "sizes": {"model.so": len(content)}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _zip_of(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, path.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def _image(tmp: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp / "part.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def _score_with_bundle(make: Callable[[Path], Path]) -> Setup:
    return lambda tmp: ["score", "--bundle", str(make(tmp)), str(_image(tmp))]


def _truncated_zip(tmp: Path) -> Path:
    archive = _zip_of(_tiny_bundle(tmp / "b"), tmp / "model.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return archive


def _model_with_external_data(tmp: Path, location: str) -> Path:
    model = classifier()
    onnx.save(model, tmp / "model.onnx", save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    edited = onnx.load(str(tmp / "model.onnx"), load_external_data=False)
    for tensor in edited.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(edited, tmp / "model.onnx")
    return tmp / "model.onnx"


def _saved_classifier(tmp: Path) -> Path:
    onnx.save(classifier(), tmp / "m.onnx")
    return tmp / "m.onnx"


def _create_model(model: Callable[[Path], Path], *extra: str) -> Setup:
    return lambda tmp: ["create-model", "--project-name", "boards", "--model-file", str(model(tmp)), *extra]


def _file(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(content)
        return tmp / name

    return make


# (case id, argv built in a temporary folder, exit code, words the one line must contain)
CASES: list[tuple[str, Setup, int, str]] = [
    ("model file missing", _create_model(lambda t: t / "nope.onnx"), EXIT_SERVICE_ERROR, "does not exist"),
    ("model file not ONNX", _create_model(_file("x.onnx", b"\x00\xff garbage")), EXIT_SERVICE_ERROR, "read as ONNX"),
    (
        "metadata file missing",
        _create_model(_saved_classifier, "--model-metadata", "nonexistent.json"),
        EXIT_USAGE,
        "cannot read the file 'nonexistent.json': No such file or directory",
    ),
    (
        "metadata not JSON",
        _create_model(_saved_classifier, "--model-metadata", "{not json"),
        EXIT_USAGE,
        "not valid JSON",
    ),
    (
        "metadata breaks two rules",
        _create_model(_saved_classifier, "--model-metadata", '{"threshold": 2, "interpolation": "bicubic"}'),
        EXIT_SERVICE_ERROR,
        "2 validation errors detected",
    ),
    (
        "external data outside the model's folder",
        _create_model(lambda t: _model_with_external_data(t, "../elsewhere.data")),
        EXIT_SERVICE_ERROR,
        "external data must be a file beside the model",
    ),
    (
        "external data file missing",
        _create_model(lambda t: _model_with_external_data(t, "missing.data")),
        EXIT_SERVICE_ERROR,
        "not a file beside the model",
    ),
    (
        "configuration file missing",
        lambda t: [
            "start-model-packaging-job",
            "--project-name",
            "boards",
            "--model-version",
            "1",
            "--configuration",
            "file:///nonexistent/c.json",
        ],
        EXIT_USAGE,
        "cannot read the file",
    ),
    (
        "integer flag not a number",
        lambda t: ["list-model-packaging-jobs", "--project-name", "boards", "--max-results", "ten"],
        EXIT_USAGE,
        "expected an integer",
    ),
    (
        "unknown job",
        lambda t: ["describe-model-packaging-job", "--project-name", "boards", "--job-name", "nope"],
        EXIT_SERVICE_ERROR,
        "does not exist",
    ),
    (
        "export onto a file",
        lambda t: [
            "export-component",
            "--component-name",
            "com.example.X",
            "--component-version",
            "1.0.0",
            "--output",
            str(_file("taken", b"x")(t)),
        ],
        EXIT_SERVICE_ERROR,
        "it is a file; name a folder",
    ),
    (
        "score: image missing",
        lambda t: ["score", "--bundle", str(_tiny_bundle(t / "b")), str(t / "nope.png")],
        EXIT_USAGE,
        "no such image file or folder",
    ),
    (
        "score: bundle missing",
        lambda t: ["score", "--bundle", str(t / "none.zip"), str(_image(t))],
        EXIT_USAGE,
        "no such file or folder",
    ),
    (
        "score: bundle not a zip",
        _score_with_bundle(_file("model.zip", b"hello")),
        EXIT_USAGE,
        "not a complete zip archive",
    ),
    ("score: bundle truncated", _score_with_bundle(_truncated_zip), EXIT_USAGE, "not a complete zip archive"),
    (
        "score: wrong sha256",
        _score_with_bundle(lambda t: _tiny_bundle(t / "b", wrong_digest=True)),
        EXIT_USAGE,
        "the bundle was modified or corrupted",
    ),
    (
        "score: file shorter than the manifest says",
        _score_with_bundle(lambda t: _tiny_bundle(t / "b", truncated=True)),
        EXIT_USAGE,
        "model.so is 16 bytes, the manifest says 20: the bundle was truncated",
    ),
    (
        "score: entry escaping the bundle",
        _score_with_bundle(lambda t: _zip_of(_tiny_bundle(t / "b"), t / "model.zip", {"../evil": b"x"})),
        EXIT_USAGE,
        "would be written outside the bundle folder",
    ),
    (
        "score: not an image",
        lambda t: ["score", "--bundle", str(_tiny_bundle(t / "b")), str(_file("notes.png", b"text")(t))],
        EXIT_USAGE,
        "not an image",
    ),
    (
        "reference model onto a file",
        lambda t: ["build-reference-model", "--output", str(_file("f", b"x")(t))],
        EXIT_USAGE,
        "File exists",
    ),
]


@pytest.mark.parametrize(("setup", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line_and_the_documented_exit_code(
    setup: Setup, code: int, words: str, tmp_path: Path, capsys
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "create-project", "--project-name", "boards"]) == 0
    capsys.readouterr()
    argv = setup(tmp_path)
    try:
        exit_code = main([*data, *argv])
    except SystemExit as exc:  # argparse
        exit_code = exc.code
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code == code, stderr
    assert len(lines) == 1, stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in stderr


def test_a_bad_input_seen_from_a_shell_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, not only `main`: Python must not print a traceback on its way out."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "compiler.entry",
            "--data-dir",
            str(tmp_path),
            "score",
            "--bundle",
            str(tmp_path / "none.zip"),
            str(tmp_path / "none.png"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines() == [
        f"lookout-edge score: error: {tmp_path / 'none.png'}: no such image file or folder"
    ]


@pytest.mark.parametrize(
    ("variable", "words"),
    [
        ("LOOKOUT_EDGE_OUTPUT", "LOOKOUT_EDGE_OUTPUT='nfs': set it to one of local, s3"),
        ("LOOKOUT_EDGE_GREENGRASS", "LOOKOUT_EDGE_GREENGRASS='nfs': set it to one of local, cloud"),
    ],
)
def test_an_unusable_setting_is_one_clear_line(variable: str, words: str, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(variable, "nfs")
    assert main(["--data-dir", str(tmp_path), "list-projects"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"lookout-edge: error: {words}"
