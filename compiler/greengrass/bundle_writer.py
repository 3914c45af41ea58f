"""Writes a model bundle: compiled library, golden I/O and a manifest with the sha256 of every file."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_agent.bundle import output_parity
from edge_agent.bundle.manifest import MANIFEST_NAME, Golden, Manifest, write_manifest_file
from edge_agent.bundle.reader import sha256_file

BUNDLE_ARCHIVE = "model.zip"  # Greengrass unpacks it to {artifacts:decompressedPath}/model


def write_golden(bundle_dir: Path, tensor: np.ndarray, outputs: dict[str, np.ndarray]) -> Golden:
    """Store the golden input and the reference outputs; returns the manifest's `golden` section."""
    golden = bundle_dir / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    np.save(golden / "input.npy", tensor)
    files = {}
    for i, (name, value) in enumerate(outputs.items()):
        files[name] = f"golden/output_{i}.npy"
        np.save(bundle_dir / files[name], value)
    return Golden(
        input="golden/input.npy",
        outputs=files,
        atol=output_parity.ATOL,
        rtol=output_parity.RTOL,
        max_mask_mismatch=output_parity.MAX_MASK_MISMATCH,
    )


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Hash and measure every file in the folder into the manifest and write manifest.json; returns it."""
    paths = {
        p.relative_to(bundle_dir).as_posix(): p
        for p in sorted(bundle_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    files = {name: sha256_file(p) for name, p in paths.items()}
    written = replace(manifest, files=files, sizes={name: p.stat().st_size for name, p in paths.items()})
    write_manifest_file(bundle_dir / MANIFEST_NAME, written)
    return written


def zip_bundle(bundle_dir: Path, archive: Path) -> Path:
    """Deterministic zip (sorted entries, fixed timestamps) of the bundle folder."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle_dir.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(bundle_dir).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    return archive
