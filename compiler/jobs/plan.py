"""A packaging job's plan: what it will build, parsed and validated once, when the job is accepted.

`StartModelPackagingJob` turns `Configuration.Greengrass` into a `PackagingPlan` (every target, tuning and
output rule is checked there, so a bad request fails at the call), stores it with the job, and the pipeline
builds from the stored plan without reading the configuration again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from compiler.api.errors import ValidationException
from compiler.build.targets import TargetSpec, parse_compiler_options, resolve_target
from compiler.build.tuning import TuningRequest, tuning_request
from compiler.greengrass.output_store import prefix_problem
from compiler.settings import Settings


@dataclass(frozen=True)
class PackagingPlan:
    target: TargetSpec
    tuning: TuningRequest
    bucket: str
    prefix: str | None

    def to_json(self) -> str:
        tuning = {**asdict(self.tuning), "database": str(self.tuning.database) if self.tuning.database else None}
        return json.dumps(
            {"target": asdict(self.target), "tuning": tuning, "bucket": self.bucket, "prefix": self.prefix}
        )

    @classmethod
    def from_json(cls, text: str) -> PackagingPlan:
        data = json.loads(text)
        target_fields = {f.name for f in fields(TargetSpec)}
        tuning = data["tuning"]
        return cls(
            target=TargetSpec(**{k: v for k, v in data["target"].items() if k in target_fields}),
            tuning=TuningRequest(**{**tuning, "database": Path(tuning["database"]) if tuning["database"] else None}),
            bucket=data["bucket"],
            prefix=data["prefix"],
        )


def plan_job(greengrass: dict[str, Any], settings: Settings) -> PackagingPlan:
    """The plan for `Configuration.Greengrass`; ValidationException names the field and the rule it breaks."""
    text = greengrass.get("CompilerOptions")
    options = parse_compiler_options(text) if text is not None else {}
    target = resolve_target(greengrass, options)
    tuning = tuning_request(options, settings)
    location = greengrass["S3OutputLocation"]
    prefix = location.get("Prefix")
    problem = prefix_problem(prefix)
    if problem:
        raise ValidationException(
            f"Value '{prefix}' at 'configuration.greengrass.s3OutputLocation.prefix' failed to satisfy "
            f"constraint: the prefix {problem}; use a prefix such as 'models/line-1/'."
        )
    return PackagingPlan(target, tuning, location["Bucket"], prefix)
