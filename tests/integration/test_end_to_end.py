"""The reference model through the CLI: package for x86_64, export, and run the exported module."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from compiler.api.cli import main
from compiler.api.service import Service
from compiler.greengrass.recipe_rules import recipe_problems
from compiler.models.sample_images import held_out_set
from compiler.settings import Settings
from edge_agent.bundle.output_parity import ATOL, RTOL
from edge_agent.bundle.reader import open_bundle
from edge_agent.engines.choice import EngineFactory
from edge_agent.models.runner import LoadedModel
from tests.conftest import X86_CONFIGURATION, stop_workers


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOOKOUT_EDGE_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path / "data"
    stop_workers(Service(Settings.from_env(tmp_path / "data")))


@pytest.mark.slow
def test_package_export_and_run_reference_model(data_dir, reference_model, tmp_path, capsys) -> None:
    assert main(["create-project", "--project-name", "circuit-boards"]) == 0
    assert (
        main(
            [
                "create-model",
                "--project-name",
                "circuit-boards",
                "--model-file",
                str(reference_model.model_path),
                "--model-metadata",
                str(reference_model.metadata_path),
            ]
        )
        == 0
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps(X86_CONFIGURATION))
    capsys.readouterr()
    assert (
        main(
            [
                "start-model-packaging-job",
                "--project-name",
                "circuit-boards",
                "--model-version",
                "1",
                "--configuration",
                f"file://{config}",
                "--wait",
            ]
        )
        == 0
    )
    out, progress = capsys.readouterr()
    job_name = json.loads(out)["JobName"]
    # --wait prints every step the job went through, however short, in order.
    steps = [
        "CREATED: Job created",
        "RUNNING: Started by packaging worker",
        "RUNNING: Pinning input",
        "RUNNING: Importing the model into TVM",
        "RUNNING: Schedules: ",
        "RUNNING: Checking the Linux x86_64 CPU core-avx2 module against ONNX Runtime",
        "RUNNING: Writing the artifact bundle",
        "RUNNING: Writing artifacts to s3://my-bucket/models/",
        "RUNNING: Registering component com.example.CircuitBoards version 1.0.0",
        "SUCCEEDED: Packaging succeeded. Schedules: stored tuning records",
    ]
    positions = [progress.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), progress
    assert "default (untuned) schedules" not in progress  # the shipped records cover every kernel
    assert main(["describe-model-packaging-job", "--project-name", "circuit-boards", "--job-name", job_name]) == 0
    description = json.loads(capsys.readouterr().out)["ModelPackagingDescription"]
    assert description["ModelPackagingOutputDetails"]["Greengrass"] == {
        "ComponentVersionArn": "arn:aws:greengrass:us-east-1:000000000000:components:com.example.CircuitBoards:"
        "versions:1.0.0",
        "ComponentName": "com.example.CircuitBoards",
        "ComponentVersion": "1.0.0",
    }

    gg = tmp_path / "gg"
    assert (
        main(
            [
                "export-component",
                "--component-name",
                "com.example.CircuitBoards",
                "--component-version",
                "1.0.0",
                "--output",
                str(gg),
            ]
        )
        == 0
    )
    archive = gg / "artifacts" / "com.example.CircuitBoards" / "1.0.0" / "model.zip"
    recipe_file = gg / "recipes" / "com.example.CircuitBoards-1.0.0.yaml"
    assert sorted(p.relative_to(gg).as_posix() for p in gg.rglob("*") if p.is_file()) == [
        "artifacts/com.example.CircuitBoards/1.0.0/model.zip",
        "recipes/com.example.CircuitBoards-1.0.0.yaml",
    ]

    recipe = yaml.safe_load(recipe_file.read_text())
    assert recipe_problems(recipe) == []
    stored_json = data_dir / "buckets" / "my-bucket" / "models" / "com.example.CircuitBoards" / "1.0.0"
    assert json.loads((stored_json / "com.example.CircuitBoards-1.0.0.json").read_text()) == recipe
    manifest = recipe["Manifests"][0]
    assert manifest["Platform"] == {"os": "linux", "architecture": "amd64"}
    artifact = manifest["Artifacts"][0]
    assert artifact["URI"] == "s3://my-bucket/models/com.example.CircuitBoards/1.0.0/model.zip"
    assert artifact["Digest"] == base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    assert (
        recipe["ComponentConfiguration"]["DefaultConfiguration"]["LookoutVisionModelArn"]
        == "arn:aws:lookoutvision:us-east-1:000000000000:model/circuit-boards/1"
    )

    # The exported module, loaded with the TVM runtime, matches ONNX Runtime on unseen images.
    bundle = open_bundle(archive, tmp_path / "unpacked")
    assert bundle.manifest.target["mcpu"] == "core-avx2" and bundle.manifest.format_version == 2
    assert bundle.manifest.details["parity"]["checked"] == "at packaging"
    assert bundle.manifest.details["compiler"]["tuning"]["records_used"] > 0  # the shipped records apply
    model, choice = LoadedModel.best(EngineFactory(bundle))
    assert choice.spec.kind == "tvm-cpu" and not choice.skipped
    session = ort.InferenceSession(str(reference_model.model_path), providers=["CPUExecutionProvider"])
    for sample in held_out_set(2, seed=5):
        tensor = model.preprocess(sample.rgb)
        expected = dict(
            zip(
                ["pred_score", "anomaly_map"],
                session.run(["pred_score", "anomaly_map"], {"input": tensor}),
                strict=True,
            )
        )
        got = model.engine.run(tensor)
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, atol=ATOL, rtol=RTOL)
        assert model.detect(sample.rgb).is_anomalous == sample.is_anomalous

    # The golden I/O shipped in the bundle re-checks on the device too.
    golden = bundle.manifest.golden
    outputs = model.engine.run(np.load(bundle.root / golden.input))
    for name, path in golden.outputs.items():
        reference = np.load(bundle.root / path)
        if reference.dtype == np.bool_:
            assert np.mean(outputs[name] != reference) <= golden.max_mask_mismatch
        else:
            np.testing.assert_allclose(outputs[name], reference, atol=golden.atol, rtol=golden.rtol)


def _cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compiler.api.cli", *args],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "LOOKOUT_EDGE_DATA_DIR": str(env_dir),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        timeout=120,
    )


def test_cli_errors_read_like_the_aws_cli(tmp_path) -> None:
    missing = _cli("describe-project", "--project-name", "nope", env_dir=tmp_path)
    assert missing.returncode == 254
    assert missing.stderr.strip() == (
        "An error occurred (ResourceNotFoundException) when calling the "
        "DescribeProject operation: Project 'nope' does not exist. Create it with "
        "create-project."
    )
    invalid = _cli("list-model-packaging-jobs", "--project-name", "p", "--max-results", "101", env_dir=tmp_path)
    assert invalid.returncode == 254 and "(ValidationException)" in invalid.stderr and "maxResults" in invalid.stderr
    usage = _cli("list-model-packaging-jobs", "--max-results", "ten", env_dir=tmp_path)
    assert usage.returncode == 252 and "expected an integer" in usage.stderr
    required = _cli("start-model-packaging-job", "--project-name", "p", env_dir=tmp_path)
    assert required.returncode == 252 and "--model-version, --configuration" in required.stderr


def test_skeleton_and_cli_input_json(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LOOKOUT_EDGE_DATA_DIR", str(tmp_path / "data"))
    assert main(["start-model-packaging-job", "--generate-cli-skeleton"]) == 0
    skeleton = json.loads(capsys.readouterr().out)
    assert skeleton["Configuration"]["Greengrass"]["TargetPlatform"] == {
        "Os": "LINUX",
        "Arch": "ARM64",
        "Accelerator": "NVIDIA",
    }
    assert set(skeleton) == {"ProjectName", "ModelVersion", "JobName", "Configuration", "Description", "ClientToken"}
    (tmp_path / "in.json").write_text(json.dumps({"ProjectName": "from-json"}))
    assert main(["create-project", "--cli-input-json", f"file://{tmp_path / 'in.json'}", "--output", "yaml"]) == 0
    assert "ProjectName: from-json" in capsys.readouterr().out
