"""The README's first-client commands, run exactly as printed (same working-directory layout, same lines) against
a real agent serving the packaged reference model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from compiler.models.sample_images import held_out_set, write_samples
from tests.agent_harness import REPO, AgentProcess
from tests.conftest import BOARDS

MARKER = "<!-- example-client:"


def readme_commands() -> list[str]:
    """The lines of the fenced block that follows the example-client marker in README.md."""
    text = (REPO / "README.md").read_text()
    block = re.search(re.escape(MARKER) + r".*?\n```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md lost its example-client block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_example_client_runs_as_printed(tmp_path: Path, packaged, boards_model) -> None:
    checkout = tmp_path / "checkout"  # the files the commands name, where a fresh clone has them
    shutil.copytree(REPO / "protos", checkout / "protos")
    shutil.copytree(REPO / "examples", checkout / "examples", ignore=shutil.ignore_patterns("edge_agent_pb2*"))
    samples = held_out_set(2, seed=1000)
    write_samples(samples, checkout / "demo-output" / "reference" / "samples")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(packaged[f"{BOARDS}-1.0.0"], models / "boards.zip")

    with AgentProcess(tmp_path / "agent", models_dir=models) as agent:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # python3 = this interpreter
            "LOOKOUT_EDGE_AGENT_SOCKET": agent.address,
        }
        env.pop("PYTHONPATH", None)
        outputs = []
        for command in readme_commands():
            result = subprocess.run(
                ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
        (checkout / "notes.png").write_text("not an image")
        refused = subprocess.run(
            ["python3", "examples/detect_anomalies.py", "--model-component", BOARDS, "notes.png"],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "notes.png: not an image file OpenCV can read (PNG, JPEG, BMP, ...)"
        ]

    lines = {line.split(":")[0]: line for line in outputs[-1].splitlines() if line.endswith("%")}
    assert len(lines) == len(samples), outputs[-1]
    for sample in samples:
        line = lines[f"demo-output/reference/samples/{sample.name}.png"]
        expected = boards_model.detect(sample.rgb)
        assert (" ANOMALOUS " in line) == expected.is_anomalous, line
        assert f"score {expected.anomaly_score:.3f}" in line, line
