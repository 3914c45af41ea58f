"""Where the service keeps its data, and the names it mints (region, account): one place for defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "LOOKOUT_EDGE_DATA_DIR"
REGION_ENV = "LOOKOUT_EDGE_REGION"
ACCOUNT_ENV = "LOOKOUT_EDGE_ACCOUNT"
MAX_WORKERS_ENV = "LOOKOUT_EDGE_MAX_WORKERS"
MAX_QUEUED_ENV = "LOOKOUT_EDGE_MAX_QUEUED_JOBS"
TUNING_TRIALS_ENV = "LOOKOUT_EDGE_TUNING_TRIALS"
SHIPPED_RECORDS_ENV = "LOOKOUT_EDGE_SHIPPED_TUNING_RECORDS"
OUTPUT_ENV = "LOOKOUT_EDGE_OUTPUT"
OUTPUT_STORES = ("local", "s3")  # local: the embedded store under the data dir; s3: real S3 (AWS's config)
GREENGRASS_ENV = "LOOKOUT_EDGE_GREENGRASS"
GREENGRASS_MODES = ("local", "cloud")  # local: the component catalog only; cloud: also Greengrass V2's
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"  # local installs have no AWS account; twelve zeros keep ARNs well-formed


@dataclass(frozen=True)
class Settings:
    """Service settings; `from_env` applies flag > environment variable > default."""

    data_dir: Path
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    max_workers: int = 1  # compiling is CPU-bound: one job at a time on a laptop
    max_queued_jobs: int = 16  # CREATED + RUNNING jobs across all projects
    default_tuning_trials: int = 0  # when CompilerOptions has no tuning-trials: stored records only, no search
    shipped_records: bool = True  # also apply the tuning records shipped in compiler/build/tuning_records/
    output: str = "local"  # where S3OutputLocation goes: OUTPUT_STORES
    greengrass: str = "local"  # where packaged components are registered: GREENGRASS_MODES

    def __post_init__(self) -> None:
        """ValueError names the setting (its environment variable) and the allowed values."""
        for variable, value, allowed in (
            (OUTPUT_ENV, self.output, OUTPUT_STORES),
            (GREENGRASS_ENV, self.greengrass, GREENGRASS_MODES),
        ):
            if value not in allowed:
                raise ValueError(f"{variable}={value!r}: set it to one of {', '.join(allowed)}")

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None) -> Settings:
        """ValueError names the variable and its allowed values when one is set to something unusable."""
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or Path.home() / ".lookout-edge"
        return cls(
            data_dir=Path(chosen).expanduser().resolve(),
            region=os.environ.get(REGION_ENV, DEFAULT_REGION),
            account=os.environ.get(ACCOUNT_ENV, DEFAULT_ACCOUNT),
            max_workers=int(os.environ.get(MAX_WORKERS_ENV, "1")),
            max_queued_jobs=int(os.environ.get(MAX_QUEUED_ENV, "16")),
            default_tuning_trials=int(os.environ.get(TUNING_TRIALS_ENV, "0")),
            shipped_records=os.environ.get(SHIPPED_RECORDS_ENV, "1") != "0",
            output=os.environ.get(OUTPUT_ENV, "local"),
            greengrass=os.environ.get(GREENGRASS_ENV, "local"),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` in a worker process return these settings."""
        return {
            DATA_DIR_ENV: str(self.data_dir),
            REGION_ENV: self.region,
            ACCOUNT_ENV: self.account,
            MAX_WORKERS_ENV: str(self.max_workers),
            MAX_QUEUED_ENV: str(self.max_queued_jobs),
            TUNING_TRIALS_ENV: str(self.default_tuning_trials),
            SHIPPED_RECORDS_ENV: "1" if self.shipped_records else "0",
            OUTPUT_ENV: self.output,
            GREENGRASS_ENV: self.greengrass,
        }

    @property
    def database_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def buckets_dir(self) -> Path:
        """The embedded output store: one folder per S3 bucket name."""
        return self.data_dir / "buckets"

    @property
    def workers_dir(self) -> Path:
        return self.data_dir / "workers"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
