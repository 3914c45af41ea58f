"""The component catalog: every component version a packaging job created, and its export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from compiler.api.errors import ResourceNotFoundException, ValidationException
from compiler.database import Database
from compiler.greengrass.output_store import OutputStore


class ComponentCatalog:
    """Packaged component versions: marked deployable when a job publishes them, exported to the greengrass-cli
    layout."""

    OPERATIONS = ("ExportComponent",)

    def __init__(self, db: Database, store: OutputStore) -> None:
        self.db = db
        self.store = store

    def mark_deployable(self, name: str, version: str, recipe_keys: dict[str, str], artifact_keys: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE components SET state = 'DEPLOYABLE', recipe_keys = ?, artifact_keys = ? "
                "WHERE name = ? AND version = ?",
                (json.dumps(recipe_keys), json.dumps(artifact_keys), name, version),
            )

    def export_component(self, ComponentName: str, ComponentVersion: str, Output: str) -> dict[str, Any]:
        """Write `recipes/<name>-<version>.yaml` and `artifacts/<name>/<version>/<file>` under Output."""
        out = Path(Output).expanduser().resolve()
        if out.exists() and not out.is_dir():
            raise ValidationException(
                f"Value '{Output}' at 'output' failed to satisfy constraint: it is a file; name a folder (it is "
                "created if missing) for recipes/ and artifacts/."
            )
        rows = self.db.query(
            "SELECT * FROM components WHERE name = ? AND version = ? AND state = 'DEPLOYABLE'",
            (ComponentName, ComponentVersion),
        )
        if not rows:
            raise ResourceNotFoundException(
                f"Component {ComponentName} version {ComponentVersion} has not been packaged (or its job has not "
                "succeeded yet). Check the job with describe-model-packaging-job.",
                f"{ComponentName}:{ComponentVersion}",
                "MODEL_PACKAGE_JOB",
            )
        row = rows[0]
        try:
            recipe_key = json.loads(row["recipe_keys"])["yaml"]
            recipe = self.store.get_file(row["bucket"], recipe_key, out / "recipes" / Path(recipe_key).name)
            artifact_dir = out / "artifacts" / ComponentName / ComponentVersion
            if artifact_dir.exists():
                shutil.rmtree(artifact_dir)
            artifacts = [
                str(self.store.get_file(row["bucket"], key, artifact_dir / Path(key).name))
                for key in json.loads(row["artifact_keys"])
            ]
        except OSError as exc:
            if exc.filename is None:  # the output store lost the object: not the caller's doing
                raise
            raise ValidationException(
                f"Value '{Output}' at 'output' failed to satisfy constraint: cannot write there "
                f"({exc.strerror}: {exc.filename}); name a folder you can write to."
            ) from None
        return {"RecipeFile": str(recipe), "ArtifactFiles": artifacts}
