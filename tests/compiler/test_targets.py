"""TargetDevice / TargetPlatform / CompilerOptions rules of StartModelPackagingJob."""

from __future__ import annotations

import pytest

from compiler.api.errors import ValidationException
from compiler.build.targets import parse_compiler_options, resolve_target

X86 = {"Os": "LINUX", "Arch": "X86_64"}


def test_x86_defaults_to_core_avx2() -> None:
    target = resolve_target({"TargetPlatform": X86})
    assert (target.arch, target.accelerator, target.mcpu, target.mattr) == ("x86_64", None, "core-avx2", [])
    assert target.llvm_target() == {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "core-avx2"}


def test_mcpu_and_mattr_are_honoured() -> None:
    target = resolve_target(
        {"TargetPlatform": X86, "CompilerOptions": '{"mcpu": "skylake-avx512", "mattr": ["+avx512f", "-avx512vnni"]}'}
    )
    assert target.mcpu == "skylake-avx512" and target.mattr == ["+avx512f", "-avx512vnni"]


def test_single_quoted_options_from_aws_docs_are_accepted() -> None:
    assert parse_compiler_options("{'mcpu': 'core-avx2'}") == {"mcpu": "core-avx2"}


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "{'mcpu': open('x')}", "[1, 2]", "{1: 2}", "not json"]
)
def test_options_that_are_not_a_literal_object_are_refused(text: str) -> None:
    with pytest.raises(ValidationException, match="CompilerOptions must be a JSON object"):
        parse_compiler_options(text)


@pytest.mark.parametrize(
    ("greengrass", "words"),
    [
        ({}, "give TargetDevice"),
        ({"TargetDevice": "jetson_xavier", "TargetPlatform": X86}, "not both"),
        ({"TargetDevice": "jetson_xavier", "CompilerOptions": '{"mcpu": "x"}'}, "must not be given with TargetDevice"),
        ({"TargetPlatform": X86, "CompilerOptions": '{"gpu-code": "sm_72"}'}, "unknown compiler option(s) gpu-code"),
        (
            {"TargetPlatform": X86, "CompilerOptions": '{"mcpu": "core-avx2", "O3": true}'},
            "unknown compiler option(s) O3",
        ),
        ({"TargetPlatform": X86, "CompilerOptions": '{"mcpu": "cortex-a72"}'}, "not a CPU LLVM knows for x86_64"),
        ({"TargetPlatform": X86, "CompilerOptions": '{"mcpu": ""}'}, "non-empty string"),
        ({"TargetPlatform": X86, "CompilerOptions": '{"mattr": "+avx2"}'}, "must be a list"),
        ({"TargetPlatform": X86, "CompilerOptions": '{"mattr": ["avx2"]}'}, "must be a list of CPU features"),
        (
            {"TargetPlatform": {**X86, "Accelerator": "NVIDIA"}, "CompilerOptions": '{"gpu-code": "sm_75"}'},
            "missing trt-ver, cuda-ver",
        ),
        (
            {"TargetPlatform": {**X86, "Accelerator": "NVIDIA"}, "CompilerOptions": '{"mcpu": "core-avx2"}'},
            "unknown compiler option(s) mcpu",
        ),
    ],
)
def test_rules(greengrass: dict, words: str) -> None:
    with pytest.raises(ValidationException) as error:
        resolve_target(greengrass)
    assert words in error.value.message


def test_arm64_cpu_resolves_with_its_options() -> None:
    target = resolve_target(
        {
            "TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"},
            "CompilerOptions": '{"mcpu": "carmel", "mattr": ["+neon"]}',
        }
    )
    assert (target.arch, target.accelerator, target.mcpu, target.mattr) == ("aarch64", None, "carmel", ["+neon"])
    assert target.greengrass_architecture == "aarch64" and target.is_cross
    assert target.llvm_target() == {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": "carmel",
        "mattr": ["+neon"],
    }


def test_a_missing_cross_compiler_is_named_with_its_package(monkeypatch, tmp_path) -> None:
    from compiler.build.tvm_build import missing_tools

    target = resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}})
    monkeypatch.setenv("PATH", "/nonexistent")
    assert missing_tools(target, tmp_path) == [
        "Cross-compiling for aarch64 needs aarch64-linux-gnu-gcc, which is not installed: "
        "apt-get install gcc-aarch64-linux-gnu"
    ]
    assert missing_tools(resolve_target({"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}}), tmp_path) == []


NVIDIA_ARM64 = {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"}
NVIDIA_X86 = {**X86, "Accelerator": "NVIDIA"}


@pytest.mark.parametrize(
    ("platform", "options", "words"),
    [
        # The tested-devices table of the original service (spec §3.1): each one is refused with its reason.
        (NVIDIA_ARM64, '{"gpu-code": "sm_72", "trt-ver": "7.1.3", "cuda-ver": "10.2"}', "JetPack 4"),
        (
            NVIDIA_ARM64,
            '{"gpu-code": "sm_72", "trt-ver": "8.2.1", "cuda-ver": "10.2"}',
            "cannot run the TVM 0.27 runtime",
        ),
        (NVIDIA_X86, '{"gpu-code": "sm_75", "trt-ver": "7.1.3", "cuda-ver": "10.2"}', "Use CUDA ≥ 11 and TensorRT ≥ 8"),
        # Our own rules.
        (NVIDIA_X86, '{"gpu-code": "sm_99", "trt-ver": "8.5.2", "cuda-ver": "11.4"}', "not a GPU architecture"),
        (
            NVIDIA_X86,
            '{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11.4"}',
            "an ARM64 device: use Arch ARM64",
        ),
        (NVIDIA_ARM64, '{"gpu-code": "sm_87", "trt-ver": "8.5.2", "cuda-ver": "11.2"}', "needs CUDA ≥ 11.4"),
        (NVIDIA_ARM64, '{"gpu-code": "sm_72", "trt-ver": "8.5", "cuda-ver": "11.4"}', "x.y.z like 8.5.2"),
        (NVIDIA_ARM64, '{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11"}', "x.y like 11.4"),
        (NVIDIA_ARM64, '{"gpu-code": "sm_72", "trt-ver": "10.3.0", "cuda-ver": "13.0"}', "no longer builds for sm_72"),
        (
            NVIDIA_ARM64,
            '{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11.4", "trt-precision": "int8"}',
            "'trt-precision' must be fp32 or fp16, got 'int8'",
        ),
    ],
)
def test_nvidia_option_combinations(platform: dict, options: str, words: str) -> None:
    with pytest.raises(ValidationException) as error:
        resolve_target({"TargetPlatform": platform, "CompilerOptions": options})
    assert words in error.value.message


@pytest.mark.parametrize(
    ("greengrass", "expected"),
    [
        ({"TargetDevice": "jetson_xavier"}, ("aarch64", "sm_72", "8.5.2", "11.4")),
        # g5.xlarge from the original's tested-devices table is accepted as it is.
        (
            {
                "TargetPlatform": NVIDIA_X86,
                "CompilerOptions": '{"gpu-code": "sm_80", "trt-ver": "8.2.0", "cuda-ver": "11.2"}',
            },
            ("x86_64", "sm_80", "8.2.0", "11.2"),
        ),
        (
            {
                "TargetPlatform": NVIDIA_ARM64,
                "CompilerOptions": "{'gpu-code': 'sm_87', 'trt-ver': '8.5.2', 'cuda-ver': '11.4'}",
            },
            ("aarch64", "sm_87", "8.5.2", "11.4"),
        ),
    ],
)
def test_nvidia_targets_resolve(greengrass: dict, expected: tuple) -> None:
    target = resolve_target(greengrass)
    assert (target.arch, target.gpu_code, target.trt_ver, target.cuda_ver) == expected
    assert target.accelerator == "nvidia"
    assert target.device_requirements()["gpu"].startswith(expected[1])


def test_nvidia_targets_take_a_tensorrt_precision_and_name_their_host_cpu() -> None:
    options = '{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11.4", "trt-precision": "fp16"}'
    target = resolve_target({"TargetPlatform": NVIDIA_ARM64, "CompilerOptions": options})
    assert target.trt_precision == "fp16"
    assert resolve_target({"TargetDevice": "jetson_xavier"}).trt_precision == "fp32"
    assert target.host_cpu() == resolve_target(
        {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}, "CompilerOptions": '{"mcpu": "carmel"}'}
    )
    orin = '{"gpu-code": "sm_87", "trt-ver": "8.5.2", "cuda-ver": "11.4"}'
    assert resolve_target({"TargetPlatform": NVIDIA_ARM64, "CompilerOptions": orin}).host_cpu().mcpu == "cortex-a78ae"
    t4 = '{"gpu-code": "sm_75", "trt-ver": "8.6.1", "cuda-ver": "11.8"}'
    assert resolve_target({"TargetPlatform": NVIDIA_X86, "CompilerOptions": t4}).host_cpu().mcpu == "core-avx2"
