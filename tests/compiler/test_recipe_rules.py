"""The recipe checker enforces the nucleus' rules (so a passing recipe means something)."""

from __future__ import annotations

import copy

import pytest

from compiler.build.targets import resolve_target
from compiler.greengrass.recipe import build_recipe
from compiler.greengrass.recipe_rules import recipe_problems


@pytest.fixture
def recipe() -> dict:
    return build_recipe(
        component_name="com.example.Boards",
        component_version="1.0.0",
        description="d",
        model_arn="arn:aws:lookoutvision:us-east-1:000000000000:model/p/1",
        target=resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}}),
        artifact_uri="s3://b/k/model.zip",
        artifact_digest_b64="AAAA",
    )


def test_generated_recipe_passes(recipe) -> None:
    assert recipe_problems(recipe) == []


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda r: r.update(Extra=1), "unknown key 'Extra'"),
        (lambda r: r.update(RecipeFormatVersion="2020-01-26"), "RecipeFormatVersion"),
        (lambda r: r.update(ComponentVersion="1.0"), "ComponentVersion must be a semantic version"),
        (lambda r: r.update(ComponentName="aws.greengrass.Mine"), "reserved for public components"),
        (lambda r: r.update(ComponentName="bad/name"), "ComponentName must match"),
        (lambda r: r["Manifests"][0]["Artifacts"][0].update(URI="https://x/model.zip"), "must start with s3://"),
        (lambda r: r["Manifests"][0]["Artifacts"][0].update(Unarchive="TAR"), "Unarchive must be NONE or ZIP"),
        (lambda r: r["Manifests"][0]["Artifacts"][0]["Permission"].update(Write="ALL"), "unknown key 'Write'"),
        (lambda r: r["Manifests"][0]["Artifacts"][0].pop("Algorithm"), "Digest and Algorithm go together"),
        (lambda r: r["Manifests"][0]["Lifecycle"].update(Run="x"), "only one of Run and Startup"),
        (lambda r: r["Manifests"][0]["Lifecycle"].update(Reboot="x"), "unknown lifecycle step 'Reboot'"),
        (lambda r: r["Manifests"][0]["Lifecycle"]["Startup"].update(Timeout="5"), "Timeout must be a positive"),
        (
            lambda r: r["Manifests"][0]["Lifecycle"]["Startup"].update(Script="{Other.Comp:work:path}/x"),
            "not a direct dependency",
        ),
        (lambda r: r["Manifests"][0]["Platform"].update(architecture=64), "must map attribute names to strings"),
        (lambda r: r["ComponentDependencies"]["lookoutedge.EdgeAgent"].update(DependencyType="WEAK"), "HARD or SOFT"),
        (lambda r: r["ComponentConfiguration"].update(Merge={}), "unknown key 'Merge'"),
        (lambda r: r["Manifests"].insert(0, {"Lifecycle": {}}), "not the last manifest"),
    ],
)
def test_broken_recipes_are_caught(recipe, mutate, words) -> None:
    broken = copy.deepcopy(recipe)
    mutate(broken)
    assert any(words in p for p in recipe_problems(broken)), recipe_problems(broken)
