"""Projects and model versions: SQLite rows plus content-addressed ONNX blobs."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.api.errors import ConflictException, ResourceNotFoundException, ValidationException
from compiler.api.idempotency import settle
from compiler.api.pagination import DEFAULT_PAGE_SIZE, page_response, page_rows
from compiler.api.timestamps import to_datetime
from compiler.build.tvm_build import tvm_version
from compiler.database import Database
from compiler.jobs.store import ACTIVE_JOB_STATES
from compiler.models.contract import inspect_model
from compiler.models.onnx_file import read_model_file
from compiler.models.operator_support import unsupported_operators
from compiler.settings import Settings
from edge_agent.bundle.model_spec import ModelSpec


@dataclass(frozen=True)
class ModelVersion:
    """A stored model version."""

    project: str
    version: int
    arn: str
    sha256: str
    spec: ModelSpec
    description: str | None
    created: float


class Registry:
    """Create, describe, list and delete projects and model versions."""

    OPERATIONS = (
        "CreateProject",
        "DescribeProject",
        "ListProjects",
        "DeleteProject",
        "CreateModel",
        "DescribeModel",
        "ListModels",
        "DeleteModel",
    )

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    # --- ARNs and blobs ----------------------------------------------------------------------
    def project_arn(self, project: str) -> str:
        return f"arn:aws:lookoutvision:{self.settings.region}:{self.settings.account}:project/{project}"

    def model_arn(self, project: str, version: int) -> str:
        return f"arn:aws:lookoutvision:{self.settings.region}:{self.settings.account}:model/{project}/{version}"

    def blob_path(self, sha256: str) -> Path:
        return self.settings.blob_dir / sha256[:2] / f"{sha256}.onnx"

    def _store_blob(self, data: bytes) -> str:
        """Write `data` into the blob store atomically; returns its sha256."""
        self.settings.blob_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.settings.blob_dir, delete=False) as tmp:
            tmp.write(data)
            tmp_path = Path(tmp.name)
        sha = hashlib.sha256(data).hexdigest()
        final = self.blob_path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
        return sha

    # --- projects ----------------------------------------------------------------------------
    def project_row(self, conn: sqlite3.Connection | None, project: str) -> sqlite3.Row:
        sql, params = "SELECT * FROM projects WHERE name = ?", (project,)
        rows = conn.execute(sql, params).fetchall() if conn else self.db.query(sql, params)
        if not rows:
            raise ResourceNotFoundException(
                f"Project '{project}' does not exist. Create it with create-project.", project, "PROJECT"
            )
        return rows[0]

    def _project_metadata(self, row: sqlite3.Row) -> dict[str, Any]:
        return {"ProjectArn": row["arn"], "ProjectName": row["name"], "CreationTimestamp": to_datetime(row["created"])}

    def create_project(self, ProjectName: str, **_: Any) -> dict[str, Any]:
        now = time.time()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM projects WHERE name = ?", (ProjectName,)).fetchone():
                raise ConflictException(f"Project '{ProjectName}' already exists.", ProjectName, "PROJECT")
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM projects").fetchone()[0]
            conn.execute(
                "INSERT INTO projects (name, arn, created, seq) VALUES (?, ?, ?, ?)",
                (ProjectName, self.project_arn(ProjectName), now, seq),
            )
            result = settle(conn, {"ProjectMetadata": self._project_metadata(self.project_row(conn, ProjectName))})
        return result

    def describe_project(self, ProjectName: str) -> dict[str, Any]:
        row = self.project_row(None, ProjectName)
        models = self.db.query("SELECT * FROM models WHERE project = ? ORDER BY version DESC", (ProjectName,))
        return {
            "ProjectDescription": {**self._project_metadata(row), "Models": [self._model_metadata(m) for m in models]}
        }

    def list_projects(self, NextToken: str | None = None, MaxResults: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
        page, token = page_rows(
            self.db, "projects", "SELECT * FROM projects WHERE 1 = 1", (), "seq", NextToken, MaxResults
        )
        return page_response("ListProjects", [self._project_metadata(r) for r in page], token)

    def delete_project(self, ProjectName: str, **_: Any) -> dict[str, Any]:
        with self.db.transaction() as conn:
            row = self.project_row(conn, ProjectName)
            self._refuse_if_jobs_active(conn, ProjectName, None)
            conn.execute("DELETE FROM projects WHERE name = ?", (ProjectName,))
            result = settle(conn, {"ProjectArn": row["arn"]})
        return result

    def _refuse_if_jobs_active(self, conn: sqlite3.Connection, project: str, version: int | None) -> None:
        sql = f"SELECT name FROM jobs WHERE project = ? AND status IN {ACTIVE_JOB_STATES}"
        params: tuple = (project,)
        if version is not None:
            sql, params = sql + " AND model_version = ?", (project, version)
        active = [r["name"] for r in conn.execute(sql, params)]
        if active:
            what = f"model version {version} of project '{project}'" if version else f"project '{project}'"
            raise ConflictException(
                f"Cannot delete {what} while model packaging jobs are running: {', '.join(active)}. "
                "Wait until they finish (describe-model-packaging-job) and try again.",
                project if version is None else f"{project}/{version}",
                "PROJECT" if version is None else "MODEL",
            )

    # --- models ------------------------------------------------------------------------------
    def _model_metadata(self, row: sqlite3.Row) -> dict[str, Any]:
        result = {
            "ModelVersion": str(row["version"]),
            "ModelArn": row["arn"],
            "CreationTimestamp": to_datetime(row["created"]),
            "Status": "TRAINED",
            "ModelType": row["model_type"],
        }
        if row["description"]:
            result["Description"] = row["description"]
        return result

    def resolve_version(self, conn: sqlite3.Connection | None, project: str, version: str) -> int:
        """A ModelVersion string ("3" or "latest") → an existing version number."""
        self.project_row(conn, project)
        if version == "latest":
            sql, params = "SELECT MAX(version) FROM models WHERE project = ?", (project,)
        else:
            sql, params = "SELECT version FROM models WHERE project = ? AND version = ?", (project, int(version))
        rows = conn.execute(sql, params).fetchall() if conn else self.db.query(sql, params)
        if not rows or rows[0][0] is None:
            raise ResourceNotFoundException(
                f"Model version '{version}' does not exist in project '{project}'. "
                "Import a model with create-model, or list versions with list-models.",
                f"{project}/{version}",
                "MODEL",
            )
        return int(rows[0][0])

    def _model_row(self, project: str, version: str) -> sqlite3.Row:
        number = self.resolve_version(None, project, version)
        return self.db.query("SELECT * FROM models WHERE project = ? AND version = ?", (project, number))[0]

    @staticmethod
    def _model_version(row: sqlite3.Row) -> ModelVersion:
        return ModelVersion(
            project=row["project"],
            version=row["version"],
            arn=row["arn"],
            sha256=row["sha256"],
            spec=ModelSpec.from_dict(json.loads(row["metadata"])),
            description=row["description"],
            created=row["created"],
        )

    def get_model(self, project: str, version: str) -> ModelVersion:
        return self._model_version(self._model_row(project, version))

    def create_model(
        self,
        ProjectName: str,
        ModelFile: str,
        ModelType: str | None = None,
        ModelMetadata: dict[str, Any] | None = None,
        Description: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        self.project_row(None, ProjectName)
        model_file = read_model_file(Path(ModelFile).expanduser())
        spec = inspect_model(model_file.model, ModelType, ModelMetadata or {})
        unsupported = unsupported_operators(model_file.model)
        if unsupported:
            raise ValidationException(
                f"The model uses operators the compiler (TVM {tvm_version()}'s ONNX importer) cannot convert: "
                f"{', '.join(unsupported)}. Export it with standard ONNX operators only (no custom or "
                "vendor-specific domains such as com.microsoft)."
            )
        sha = self._store_blob(model_file.data)
        now = time.time()
        with self.db.transaction() as conn:
            self.project_row(conn, ProjectName)
            version = conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE project = ?", (ProjectName,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO models (project, version, arn, sha256, model_type, metadata, description, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ProjectName,
                    version,
                    self.model_arn(ProjectName, version),
                    sha,
                    spec.model_type,
                    json.dumps(spec.to_dict()),
                    Description,
                    now,
                ),
            )
            row = conn.execute(
                "SELECT * FROM models WHERE project = ? AND version = ?", (ProjectName, version)
            ).fetchone()
            result = settle(conn, {"ModelMetadata": self._model_metadata(row)})
        return result

    def describe_model(self, ProjectName: str, ModelVersion: str) -> dict[str, Any]:
        row = self._model_row(ProjectName, ModelVersion)
        model = self._model_version(row)
        description = {
            **self._model_metadata(row),
            "ModelSha256": model.sha256,
            "StatusMessage": "Imported from ONNX; ready to package.",
            "ModelMetadata": _metadata_document(model.spec),
        }
        return {"ModelDescription": description}

    def list_models(
        self, ProjectName: str, NextToken: str | None = None, MaxResults: int = DEFAULT_PAGE_SIZE
    ) -> dict[str, Any]:
        self.project_row(None, ProjectName)
        page, token = page_rows(
            self.db,
            f"models/{ProjectName}",
            "SELECT * FROM models WHERE project = ?",
            (ProjectName,),
            "version",
            NextToken,
            MaxResults,
        )
        return page_response("ListModels", [self._model_metadata(r) for r in page], token)

    def delete_model(self, ProjectName: str, ModelVersion: str, **_: Any) -> dict[str, Any]:
        with self.db.transaction() as conn:
            version = self.resolve_version(conn, ProjectName, ModelVersion)
            self._refuse_if_jobs_active(conn, ProjectName, version)
            arn = self.model_arn(ProjectName, version)
            conn.execute("DELETE FROM models WHERE project = ? AND version = ?", (ProjectName, version))
            result = settle(conn, {"ModelArn": arn})
        return result


def _metadata_document(spec: ModelSpec) -> dict[str, Any]:
    """The spec as the metadata file's keys (`threshold` only when it was given: else the model decides)."""
    internal = {"model_type", "input_name", "outputs", "threshold_configured"}
    if not spec.threshold_configured:
        internal.add("threshold")
    return {k: v for k, v in spec.to_dict().items() if k not in internal}
