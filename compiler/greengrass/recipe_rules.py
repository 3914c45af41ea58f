"""The nucleus' recipe rules (specs/greengrass.md §1), as a checker for every recipe we write or ship.

The Java nucleus fails a deployment on any unknown key outside the free-form maps (`Lifecycle`,
`Platform`, `DefaultConfiguration`); this checker is stricter still: it wants the documented spelling.
"""

from __future__ import annotations

from typing import Any

import regex

from edge_agent.defaults import COMPONENT_NAME

ROOT_KEYS = {
    "RecipeFormatVersion",
    "ComponentName",
    "ComponentVersion",
    "ComponentDescription",
    "ComponentPublisher",
    "ComponentType",
    "ComponentSource",
    "ComponentConfiguration",
    "ComponentDependencies",
    "Manifests",
    "Lifecycle",
}
MANIFEST_KEYS = {"Platform", "Name", "Lifecycle", "Artifacts", "Selections"}
ARTIFACT_KEYS = {"URI", "Unarchive", "Permission", "Digest", "Algorithm"}
PERMISSION_KEYS = {"Read", "Execute"}
DEPENDENCY_KEYS = {"VersionRequirement", "DependencyType"}
POLICY_KEYS = ("policyDescription", "operations", "resources")
STEP_KEYS = {"Script", "RequiresPrivilege", "Skipif", "Timeout", "Setenv"}
LIFECYCLE_STEPS = {"Setenv", "Bootstrap", "Install", "Run", "Startup", "Shutdown", "Recover"}
COMPONENT_TYPES = {"aws.greengrass.generic", "aws.greengrass.lambda", "aws.greengrass.plugin", "aws.greengrass.nucleus"}
SEMVER = regex.compile(r"(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})(-[0-9A-Za-z.\-]+)?(\+[0-9A-Za-z.\-]+)?")
URI_SCHEMES = ("s3://", "greengrass:", "docker:")
SKIPIF = regex.compile(r"(exists|onpath) +(.+)")
VARIABLE = regex.compile(r"\{([.\w-]+):([.\w-]+)(?::([^:}]*))?\}")
OWN_NAMESPACES = {"artifacts", "work", "kernel", "iot", "configuration"}


def _keys(where: str, value: Any, allowed: set[str], problems: list[str]) -> dict:
    if not isinstance(value, dict):
        problems.append(f"{where} must be a map, got {type(value).__name__}")
        return {}
    for key in value:
        if key not in allowed:
            problems.append(
                f"{where}: unknown key '{key}' (the nucleus rejects it; allowed: {', '.join(sorted(allowed))})"
            )
    return value


def _check_step(where: str, step: Any, dependencies: set[str], problems: list[str]) -> None:
    if isinstance(step, str):
        _check_variables(where, step, dependencies, problems)
        return
    step = _keys(where, step, STEP_KEYS, problems)
    if "Script" not in step and step:
        problems.append(f"{where}: a step object needs 'Script'")
    if isinstance(step.get("Script"), str):
        _check_variables(f"{where}.Script", step["Script"], dependencies, problems)
    if "Timeout" in step and not (isinstance(step["Timeout"], int) and step["Timeout"] > 0):
        problems.append(f"{where}.Timeout must be a positive integer (seconds)")
    if "Skipif" in step and not SKIPIF.fullmatch(str(step["Skipif"])):
        problems.append(f"{where}.Skipif must be 'exists <file>' or 'onpath <executable>'")
    if "RequiresPrivilege" in step and str(step["RequiresPrivilege"]).lower() not in ("true", "false"):
        problems.append(f"{where}.RequiresPrivilege must be true or false")


def _check_variables(where: str, text: str, dependencies: set[str], problems: list[str]) -> None:
    for match in VARIABLE.finditer(text):
        first, _, third = match.groups()
        if third is None:
            if first not in OWN_NAMESPACES:
                problems.append(f"{where}: unknown recipe variable namespace in '{match.group(0)}'")
        elif first not in dependencies:
            problems.append(f"{where}: '{match.group(0)}' names {first}, which is not a direct dependency")


def _check_lifecycle(where: str, lifecycle: Any, dependencies: set[str], problems: list[str]) -> None:
    if not isinstance(lifecycle, dict):
        problems.append(f"{where} must be a map")
        return
    if "Run" in lifecycle and "Startup" in lifecycle:
        problems.append(f"{where}: only one of Run and Startup may be defined")
    for name, step in lifecycle.items():
        if name not in LIFECYCLE_STEPS:
            problems.append(f"{where}: unknown lifecycle step '{name}' (steps: {', '.join(sorted(LIFECYCLE_STEPS))})")
        elif name == "Setenv":
            if not isinstance(step, dict):
                problems.append(f"{where}.Setenv must be a map")
        else:
            _check_step(f"{where}.{name}", step, dependencies, problems)


def _check_artifact(where: str, artifact: Any, problems: list[str]) -> None:
    artifact = _keys(where, artifact, ARTIFACT_KEYS, problems)
    uri = artifact.get("URI")
    if not isinstance(uri, str) or not uri.startswith(URI_SCHEMES):
        problems.append(f"{where}.URI must start with s3://, greengrass: or docker:, got {uri!r}")
    if "Unarchive" in artifact and str(artifact["Unarchive"]).upper() not in ("NONE", "ZIP"):
        problems.append(f"{where}.Unarchive must be NONE or ZIP")
    permission = _keys(f"{where}.Permission", artifact.get("Permission", {}), PERMISSION_KEYS, problems)
    for key, value in permission.items():
        if str(value).upper() not in ("NONE", "OWNER", "ALL"):
            problems.append(f"{where}.Permission.{key} must be NONE, OWNER or ALL")
    if ("Digest" in artifact) != ("Algorithm" in artifact):
        problems.append(f"{where}: Digest and Algorithm go together")


def _check_manifests(manifests: Any, dependencies: set[str], problems: list[str]) -> None:
    if not isinstance(manifests, list):
        problems.append("Manifests must be a list")
        return
    for i, manifest in enumerate(manifests):
        where = f"Manifests[{i}]"
        manifest = _keys(where, manifest, MANIFEST_KEYS, problems)
        platform = manifest.get("Platform") or {}
        if not isinstance(platform, dict) or not all(isinstance(v, str) for v in platform.values()):
            problems.append(f"{where}.Platform must map attribute names to strings")
        elif not platform and i != len(manifests) - 1:
            problems.append(f"{where} has no Platform (matches every device) but is not the last manifest")
        if "Lifecycle" in manifest:
            _check_lifecycle(f"{where}.Lifecycle", manifest["Lifecycle"], dependencies, problems)
        names = set()
        for j, artifact in enumerate(manifest.get("Artifacts", [])):
            _check_artifact(f"{where}.Artifacts[{j}]", artifact, problems)
            name = str(artifact.get("URI", "")).rsplit("/", 1)[-1]
            if name in names:
                problems.append(f"{where}.Artifacts[{j}]: file name '{name}' is used twice in one manifest")
            names.add(name)


def _check_access_control(access: Any, problems: list[str]) -> None:
    """IPC authorization policies: destination → policy id → all three of policyDescription, operations, resources
    (a null or malformed policy makes the nucleus drop every policy of the component)."""
    where = "DefaultConfiguration.accessControl"
    if not isinstance(access, dict):
        problems.append(f"{where} must be a map of IPC service identifiers")
        return
    for destination, policies in access.items():
        if not isinstance(policies, dict) or not policies:
            problems.append(f"{where}.{destination} must map policy ids to policies")
            continue
        for policy_id, policy in policies.items():
            policy = _keys(f"{where}.{destination}.{policy_id}", policy, POLICY_KEYS, problems)
            for key in POLICY_KEYS:
                value = policy.get(key)
                valid = (
                    isinstance(value, str)
                    if key == "policyDescription"
                    else (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value))
                )
                if not valid:
                    kind = "a string" if key == "policyDescription" else "a non-empty list of strings"
                    problems.append(f"{where}.{destination}.{policy_id}.{key} must be {kind}")


def recipe_problems(recipe: Any) -> list[str]:
    """Every rule the recipe breaks; an empty list means the nucleus would accept it."""
    problems: list[str] = []
    recipe = _keys("recipe", recipe, ROOT_KEYS, problems)
    if recipe.get("RecipeFormatVersion") != "2020-01-25":
        problems.append("RecipeFormatVersion must be '2020-01-25' (quote it in YAML)")
    name = recipe.get("ComponentName")
    if not isinstance(name, str) or not COMPONENT_NAME.fullmatch(name):
        problems.append(f"ComponentName must match [a-zA-Z0-9-_.]+ and be at most 128 characters, got {name!r}")
    elif name.startswith("aws.greengrass"):
        problems.append("ComponentName must not start with aws.greengrass (reserved for public components)")
    version = recipe.get("ComponentVersion")
    if not isinstance(version, str) or not SEMVER.fullmatch(version) or len(version) > 64:
        problems.append(f"ComponentVersion must be a semantic version string like '1.0.0', got {version!r}")
    if "ComponentType" in recipe and recipe["ComponentType"] not in COMPONENT_TYPES:
        problems.append(f"ComponentType must be one of {', '.join(sorted(COMPONENT_TYPES))}")
    configuration = _keys(
        "ComponentConfiguration", recipe.get("ComponentConfiguration", {}), {"DefaultConfiguration"}, problems
    )
    if not isinstance(configuration.get("DefaultConfiguration", {}), dict):
        problems.append("ComponentConfiguration.DefaultConfiguration must be a map")
    else:
        _check_access_control(configuration.get("DefaultConfiguration", {}).get("accessControl", {}), problems)
    dependencies = recipe.get("ComponentDependencies", {})
    for dep, props in dependencies.items() if isinstance(dependencies, dict) else []:
        props = _keys(f"ComponentDependencies.{dep}", props, DEPENDENCY_KEYS, problems)
        if not isinstance(props.get("VersionRequirement"), str) or not props.get("VersionRequirement"):
            problems.append(f"ComponentDependencies.{dep}.VersionRequirement is required (an npm-style range)")
        if str(props.get("DependencyType", "HARD")).upper() not in ("HARD", "SOFT"):
            problems.append(f"ComponentDependencies.{dep}.DependencyType must be HARD or SOFT")
    dependency_names = set(dependencies) if isinstance(dependencies, dict) else set()
    _check_manifests(recipe.get("Manifests", []), dependency_names, problems)
    if "Lifecycle" in recipe:
        _check_lifecycle("Lifecycle", recipe["Lifecycle"], dependency_names, problems)
    return problems
