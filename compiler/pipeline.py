"""One packaging job, step by step: pin shapes → compile → parity check → bundle → publish → catalog."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from compiler import parity
from compiler.bundle_writer import BUNDLE_ARCHIVE, write_golden, write_manifest, zip_bundle
from compiler.jobs import component_version_arn
from compiler.output_store import object_key, s3_uri
from compiler.recipe import artifact_digest, build_recipe, recipe_file_stem, write_recipes
from compiler.recipe_rules import recipe_problems
from compiler.targets import resolve_target
from compiler.tvm_build import compile_model, missing_cross_compiler, pin_input_shape, tvm_version
from edge_agent import output_parity
from edge_agent.tvm_runtime import CompiledModule

if TYPE_CHECKING:
    from compiler.service import Service


class PackagingFailure(Exception):
    """A failure the user can act on; its text becomes the job's StatusMessage."""


def _progress(service: Service, seq: int, message: str) -> None:
    with service.db.transaction() as conn:
        conn.execute("UPDATE jobs SET status_message = ?, updated = ? WHERE seq = ?", (message, time.time(), seq))


def run_pipeline(service: Service, seq: int) -> dict[str, Any]:
    """Package job `seq`; returns its ModelPackagingOutputDetails."""
    job = service.db.query("SELECT * FROM jobs WHERE seq = ?", (seq,))[0]
    greengrass = json.loads(job["configuration"])["Greengrass"]
    target = resolve_target(greengrass)
    model_version = service.registry.get_model(job["project"], str(job["model_version"]))
    spec = model_version.spec
    name, version = job["component_name"], job["component_version"]
    service.settings.data_dir.joinpath("work").mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=service.settings.data_dir / "work") as work:
        bundle_dir = Path(work) / "bundle"
        bundle_dir.mkdir()
        source = onnx.load(str(service.registry.blob_path(model_version.sha256)))
        _progress(
            service, seq, f"Pinning input '{spec.input_name}' to [1, 3, {spec.input_size[0]}, {spec.input_size[1]}]."
        )
        model = pin_input_shape(source, spec)

        missing = missing_cross_compiler(target)
        if missing:
            raise PackagingFailure(missing + ", then start the job again.")
        _progress(service, seq, f"Compiling with TVM {tvm_version()} for {target.describe()}.")
        try:
            library = compile_model(model, spec, target, bundle_dir)
        except Exception as exc:
            raise PackagingFailure(
                f"TVM could not compile the model for {target.describe()}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:500]}"
            ) from exc

        tensor = parity.golden_input(spec)
        reference = parity.run_onnx_runtime(model, spec, tensor)
        if target.is_cross:
            _progress(
                service,
                seq,
                f"The {target.arch} module cannot run here: the agent checks it against the "
                "golden outputs (ONNX Runtime's) when the model starts on the device.",
            )
            parity_record: dict[str, Any] = {"checked": "on the device, at StartModel (golden check)"}
        else:
            _progress(service, seq, "Checking the compiled model against ONNX Runtime on the golden input.")
            report = output_parity.compare(reference, CompiledModule(library, list(reference)).run(tensor))
            if not report.ok:
                raise PackagingFailure(
                    "The compiled model does not match ONNX Runtime: "
                    + "; ".join(report.failures)
                    + ". This is a compiler defect for this model; please report it with the model."
                )
            parity_record = {
                "checked": "at packaging",
                "max_abs_error": report.max_abs_error,
                "mask_mismatch": report.mismatch_fraction,
            }

        _progress(service, seq, "Writing the artifact bundle.")
        golden = write_golden(bundle_dir, tensor, reference)
        write_manifest(
            bundle_dir,
            {
                "component": {"name": name, "version": version},
                "model": {
                    "arn": model_version.arn,
                    "project": model_version.project,
                    "version": str(model_version.version),
                    "source_sha256": model_version.sha256,
                    "spec": spec.to_dict(),
                },
                "outputs": list(reference),
                "target": target.to_dict(),
                "compiler": {
                    "tvm_version": tvm_version(),
                    "compiler_options": greengrass.get("CompilerOptions"),
                    "library": library.name,
                },
                "golden": golden,
                "parity": parity_record,
            },
        )
        archive = zip_bundle(bundle_dir, Path(work) / BUNDLE_ARCHIVE)

        bucket, prefix = greengrass["S3OutputLocation"]["Bucket"], greengrass["S3OutputLocation"].get("Prefix")
        artifact_key = object_key(prefix, name, version, BUNDLE_ARCHIVE)
        recipe = build_recipe(
            component_name=name,
            component_version=version,
            description=greengrass.get("ComponentDescription")
            or f"Lookout for Vision model {model_version.project} version {model_version.version}",
            model_arn=model_version.arn,
            target=target,
            artifact_uri=s3_uri(bucket, artifact_key),
            artifact_digest_b64=artifact_digest(archive),
        )
        problems = recipe_problems(recipe)
        if problems:
            raise PackagingFailure("The generated recipe breaks Greengrass rules: " + "; ".join(problems))
        yaml_path, json_path = write_recipes(recipe, Path(work))

        _progress(service, seq, f"Writing artifacts to {s3_uri(bucket, object_key(prefix, name, version))}/.")
        stem = recipe_file_stem(name, version)
        recipe_keys = {fmt: object_key(prefix, name, version, f"{stem}.{fmt}") for fmt in ("yaml", "json")}
        try:
            service.output_store.put_file(bucket, artifact_key, archive)
            service.output_store.put_file(bucket, recipe_keys["yaml"], yaml_path)
            service.output_store.put_file(bucket, recipe_keys["json"], json_path)
        except OSError as exc:
            raise PackagingFailure(f"Could not write to the output location s3://{bucket}/: {exc}") from exc

    _progress(service, seq, f"Registering component {name} version {version}.")
    service.catalog.mark_deployable(name, version, recipe_keys, [artifact_key])
    return {
        "Greengrass": {
            "ComponentVersionArn": component_version_arn(service.settings, name, version),
            "ComponentName": name,
            "ComponentVersion": version,
        }
    }
