"""One packaging job, as named steps: pin the input → golden outputs → build the engines (engine_builds.py) →
write the bundle → publish recipe and artifacts → register the component version. Each step records its
progress; a step that fails raises PackagingFailure (the user's to act on) or lets a defect of ours through
(compiler/jobs/failures.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compiler.build import parity
from compiler.build.tvm_build import missing_tools, pin_input_shape, tvm_version
from compiler.greengrass.bundle_writer import BUNDLE_ARCHIVE, write_golden, write_manifest, zip_bundle
from compiler.greengrass.catalog import ComponentCatalog
from compiler.greengrass.cloud_registration import GreengrassCloud, RegistrationError
from compiler.greengrass.output_store import OutputStore, object_key, s3_uri
from compiler.greengrass.recipe import artifact_digest, build_recipe, recipe_file_stem, write_recipes
from compiler.greengrass.recipe_rules import recipe_problems
from compiler.jobs.engine_builds import BuiltEngines, build_engines
from compiler.jobs.failures import PackagingFailure
from compiler.jobs.operations import component_version_arn
from compiler.jobs.plan import PackagingPlan, plan_job
from compiler.jobs.scratch import scratch_folder
from compiler.jobs.store import JobStore
from compiler.models.registry import ModelVersion, Registry
from compiler.settings import Settings
from edge_agent.bundle.manifest import Manifest
from edge_agent.bundle.model_spec import ModelSpec


@dataclass(frozen=True)
class PackagingResult:
    """A finished job's ModelPackagingOutputDetails, and what its final StatusMessage should tell the user."""

    output: dict[str, Any]
    notes: str


@dataclass(frozen=True)
class JobContext:
    """What the pipeline works with: the job store, the model registry, the component catalog, the output store,
    the service's settings and, when components are registered there too, Greengrass V2 in the cloud."""

    store: JobStore
    registry: Registry
    catalog: ComponentCatalog
    output_store: OutputStore
    settings: Settings
    cloud: GreengrassCloud | None = None


@dataclass(frozen=True)
class _Job:
    """What every step of one job reads: its row's facts, its plan, its model version, its scratch folder."""

    seq: int
    component_name: str
    component_version: str
    greengrass: dict[str, Any]
    plan: PackagingPlan
    model_version: ModelVersion
    work: Path

    @property
    def spec(self) -> ModelSpec:
        return self.model_version.spec

    @property
    def bundle_dir(self) -> Path:
        return self.work / "bundle"


def _pinned_model(context: JobContext, job: _Job) -> onnx.ModelProto:
    """The model version with its image input pinned to [1, 3, H, W]; the tools the target needs."""
    spec = job.spec
    context.store.progress(
        job.seq, f"Pinning input '{spec.input_name}' to [1, 3, {spec.input_size[0]}, {spec.input_size[1]}]."
    )
    model = pin_input_shape(onnx.load(str(context.registry.blob_path(job.model_version.sha256))), spec)
    missing = missing_tools(job.plan.target, context.settings.data_dir)
    if missing:
        raise PackagingFailure("; ".join(missing) + ". Then start the job again.")
    return model


def _write_bundle(
    context: JobContext, job: _Job, tensor: np.ndarray, reference: dict[str, np.ndarray], built: BuiltEngines
) -> Path:
    """Golden I/O, the manifest (the contract with the agent) and the zip."""
    context.store.progress(job.seq, "Writing the artifact bundle.")
    version, target = job.model_version, job.plan.target
    manifest = Manifest(
        component_name=job.component_name,
        component_version=job.component_version,
        model={
            "arn": version.arn,
            "project": version.project,
            "version": str(version.version),
            "source_sha256": version.sha256,
        },
        spec=job.spec,
        outputs=list(reference),
        target=target.to_dict(),
        golden=write_golden(job.bundle_dir, tensor, reference),
        engines=built.engines,
        details={
            "compiler": {
                "tvm_version": tvm_version(),
                "compiler_options": job.greengrass.get("CompilerOptions"),
                "library": built.primary.library.name,
                "device_code": built.primary.device_code,
                "tuning": built.tuning.to_dict(),
            },
            "requirements": target.device_requirements(),
            "parity": built.parity,
        },
    )
    write_manifest(job.bundle_dir, manifest)
    return zip_bundle(job.bundle_dir, job.work / BUNDLE_ARCHIVE)


def _publish(context: JobContext, job: _Job, archive: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The recipe (checked against the nucleus' rules) and the artifacts in the output location; returns
    the object keys by kind (artifact, yaml, json) and the recipe."""
    name, version, plan = job.component_name, job.component_version, job.plan
    keys = {"artifact": object_key(plan.prefix, name, version, BUNDLE_ARCHIVE)}
    model_version = job.model_version
    recipe = build_recipe(
        component_name=name,
        component_version=version,
        description=job.greengrass.get("ComponentDescription")
        or f"Lookout for Vision model {model_version.project} version {model_version.version}",
        model_arn=model_version.arn,
        target=plan.target,
        artifact_uri=s3_uri(plan.bucket, keys["artifact"]),
        artifact_digest_b64=artifact_digest(archive),
    )
    problems = recipe_problems(recipe)
    if problems:
        raise PackagingFailure("The generated recipe breaks Greengrass rules: " + "; ".join(problems))
    files = dict(zip(("yaml", "json"), write_recipes(recipe, job.work), strict=True))
    context.store.progress(
        job.seq, f"Writing artifacts to {s3_uri(plan.bucket, object_key(plan.prefix, name, version))}/."
    )
    stem = recipe_file_stem(name, version)
    keys.update({fmt: object_key(plan.prefix, name, version, f"{stem}.{fmt}") for fmt in files})
    try:
        context.output_store.put_file(plan.bucket, keys["artifact"], archive)
        for fmt, path in files.items():
            context.output_store.put_file(plan.bucket, keys[fmt], path)
    except OSError as exc:
        raise PackagingFailure(f"Could not write to the output location s3://{plan.bucket}/: {exc}") from exc
    return keys, recipe


def _register(context: JobContext, job: _Job, keys: dict[str, str], recipe: dict[str, Any]) -> dict[str, Any]:
    """The component version becomes deployable (in Greengrass V2 too, when configured); returns
    ModelPackagingOutputDetails."""
    name, version = job.component_name, job.component_version
    context.store.progress(job.seq, f"Registering component {name} version {version}.")
    arn = component_version_arn(context.settings, name, version)
    if context.cloud is not None:
        tags = {tag["Key"]: tag["Value"] for tag in job.greengrass.get("Tags", [])}
        try:
            arn = context.cloud.register(recipe, tags, partial(context.store.progress, job.seq))
        except RegistrationError as exc:
            raise PackagingFailure(str(exc)) from exc
    context.catalog.mark_deployable(name, version, {fmt: keys[fmt] for fmt in ("yaml", "json")}, [keys["artifact"]])
    return {"Greengrass": {"ComponentVersionArn": arn, "ComponentName": name, "ComponentVersion": version}}


def run_pipeline(context: JobContext, seq: int) -> PackagingResult:
    """Package job `seq` step by step; returns its ModelPackagingOutputDetails and notes for the final status."""
    row = context.store.get(seq)
    greengrass = json.loads(row["configuration"])["Greengrass"]
    plan = PackagingPlan.from_json(row["plan"]) if row["plan"] else plan_job(greengrass, context.settings)
    model_version = context.registry.get_model(row["project"], str(row["model_version"]))
    with scratch_folder(context.settings.data_dir, f"job{seq}") as work:
        job = _Job(seq, row["component_name"], row["component_version"], greengrass, plan, model_version, Path(work))
        job.bundle_dir.mkdir()
        model = _pinned_model(context, job)
        tensor = parity.golden_input(job.spec)
        reference = parity.run_onnx_runtime(model, job.spec, tensor)
        progress = partial(context.store.progress, seq)
        golden = (tensor, reference)
        built = build_engines(progress, context.settings.data_dir, plan, job.spec, model, job.bundle_dir, golden)
        keys, recipe = _publish(context, job, _write_bundle(context, job, tensor, reference, built))
    output = _register(context, job, keys, recipe)
    return PackagingResult(output, built.tuning.describe() + built.tuning.untuned_warning(plan.target))
