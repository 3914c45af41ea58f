"""Resolves a packaging request's TargetDevice / TargetPlatform / CompilerOptions into a build target."""

from __future__ import annotations

import ast
import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import regex

from compiler.api.errors import ValidationException

CPU_OPTION_KEYS = ("mcpu", "mattr")
NVIDIA_OPTION_KEYS = ("gpu-code", "trt-ver", "cuda-ver")
# Our extension for NVIDIA targets: the precision of the TensorRT engine the device builds (default fp32).
TRT_PRECISION_KEY, TRT_PRECISIONS = "trt-precision", ("fp32", "fp16")
# Our extension, allowed with every TargetPlatform (compiler/build/tuning.py reads them).
TUNING_OPTION_KEYS = ("tuning-trials", "tuning-minutes", "tuning-database")
DEFAULT_MCPU = {"x86_64": "core-avx2", "aarch64": "generic"}
LLVM_TRIPLES = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
GREENGRASS_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "aarch64"}
MATTR_PATTERN = regex.compile(r"[+-][A-Za-z0-9_.\-]+")
MIN_DEVICE_PYTHON = "3.10"  # what the TVM 0.27 runtime needs
# Cross compilers (Debian package in brackets) for targets whose architecture differs from this machine's.
CROSS_COMPILERS = {
    "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    "x86_64": ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
}


@dataclass(frozen=True)
class TargetSpec:
    """A fully resolved build target."""

    arch: str  # x86_64 | aarch64
    accelerator: str | None  # None (CPU) | "nvidia"
    mcpu: str | None = None
    mattr: list[str] = field(default_factory=list)
    gpu_code: str | None = None
    trt_ver: str | None = None
    cuda_ver: str | None = None
    trt_precision: str = "fp32"
    os: str = "linux"

    @property
    def llvm_triple(self) -> str:
        return LLVM_TRIPLES[self.arch]

    @property
    def greengrass_architecture(self) -> str:
        return GREENGRASS_ARCHITECTURES[self.arch]

    def llvm_target(self) -> dict[str, Any]:
        """The TVM target dict for host code."""
        target: dict[str, Any] = {"kind": "llvm", "mtriple": self.llvm_triple}
        if self.mcpu:
            target["mcpu"] = self.mcpu
        if self.mattr:
            target["mattr"] = list(self.mattr)
        return target

    def describe(self) -> str:
        extra = f" {self.mcpu}" if self.mcpu else ""
        extra += f" {','.join(self.mattr)}" if self.mattr else ""
        device = "CPU"
        if self.accelerator:
            device = f"NVIDIA {self.gpu_code} (CUDA {self.cuda_ver}, TensorRT {self.trt_ver})"
        return f"Linux {self.arch} {device}{extra}"

    def device_requirements(self) -> dict[str, str]:
        """What the device needs to run this target's bundle (the manifest and README say the same)."""
        needs = {"os": "Linux", "architecture": self.arch, "python": f">= {MIN_DEVICE_PYTHON}"}
        if self.accelerator == "nvidia":
            major = self.cuda_ver.split(".")[0]
            needs.update(
                {
                    "gpu": f"{self.gpu_code} ({GPU_ARCHITECTURES[self.gpu_code][0]})",
                    "cuda_driver": f"CUDA {major}.x (built for {self.cuda_ver}; the cubin needs no PTX JIT)",
                    "tensorrt": f"{self.trt_ver} with its Python bindings, to build the preferred engine",
                    "tvm_cuda_runtime": (
                        "the fallback needs a TVM 0.27 runtime with CUDA support for this driver: the PyPI "
                        "apache-tvm wheels link libcudart.so.13 (a CUDA 13 driver)"
                    ),
                }
            )
        return needs

    def host_cpu(self) -> TargetSpec:
        """The CPU target of an NVIDIA target's host: the fallback module every NVIDIA bundle carries, built with
        the schedules a CPU bundle for that machine gets (the Jetson's own CPU where the GPU tells which it is)."""
        if self.accelerator is None:
            return self
        mcpu = JETSON_CPUS.get(self.gpu_code or "", DEFAULT_MCPU[self.arch])
        return TargetSpec(arch=self.arch, accelerator=None, mcpu=mcpu)

    @property
    def is_cross(self) -> bool:
        """True when the module cannot run on this machine (it is built for another architecture)."""
        return self.arch != platform.machine()

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "llvm_triple": self.llvm_triple,
            "greengrass_architecture": self.greengrass_architecture,
        }


def _invalid(message: str) -> ValidationException:
    return ValidationException(f"Invalid Configuration.Greengrass: {message}")


def parse_compiler_options(text: str) -> dict[str, Any]:
    """CompilerOptions is a JSON object in a string; the single-quoted form of AWS's docs is accepted too.

    The fallback uses `ast.literal_eval`, which only reads literals and never runs code.
    """
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        try:
            options = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise _invalid(
                f'CompilerOptions must be a JSON object in a string, e.g. \'{{"mcpu": "core-avx2"}}\'; '
                f"could not parse {text!r}."
            ) from None
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise _invalid(f"CompilerOptions must be a JSON object with string keys, got {type(options).__name__}.")
    return options


def _string_option(options: dict[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _invalid(f"compiler option '{key}' must be a non-empty string, got {value!r}.")
    return value


def _check_mcpu(mcpu: str, arch: str) -> None:
    import tvm.target.codegen as codegen  # deferred: importing TVM costs about a second

    if not codegen.llvm_is_valid_cpu(mcpu, LLVM_TRIPLES[arch]):
        raise _invalid(
            f"compiler option 'mcpu' value '{mcpu}' is not a CPU LLVM knows for {arch} "
            f"(for example: {DEFAULT_MCPU[arch]}, skylake-avx512, znver3 on x86_64; cortex-a72, carmel on ARM64)."
        )


def _cpu_options(options: dict[str, Any], arch: str) -> tuple[str, list[str]]:
    mcpu = _string_option(options, "mcpu") or DEFAULT_MCPU[arch]
    _check_mcpu(mcpu, arch)
    mattr = options.get("mattr", [])
    if not isinstance(mattr, list) or not all(isinstance(m, str) and MATTR_PATTERN.fullmatch(m) for m in mattr):
        raise _invalid(
            f'compiler option \'mattr\' must be a list of CPU features like ["+neon", "-sve"], got {mattr!r}.'
        )
    return mcpu, mattr


# The CPU beside each Jetson GPU (LLVM's names): the host CPU module of a Jetson bundle is built for it.
JETSON_CPUS = {"sm_53": "cortex-a57", "sm_62": "cortex-a57", "sm_72": "carmel", "sm_87": "cortex-a78ae"}
# Real NVIDIA GPU architectures: the devices they are, and the host architecture they come with (None: any).
GPU_ARCHITECTURES: dict[str, tuple[str, str | None]] = {
    "sm_53": ("Jetson Nano / TX1", "aarch64"),
    "sm_62": ("Jetson TX2", "aarch64"),
    "sm_70": ("V100", None),
    "sm_72": ("Jetson AGX Xavier / Xavier NX", "aarch64"),
    "sm_75": ("T4, RTX 20xx", None),
    "sm_80": ("A100, A30", None),
    "sm_86": ("A10G, A10, RTX 30xx", None),
    "sm_87": ("Jetson AGX Orin / Orin NX / Orin Nano", "aarch64"),
    "sm_89": ("L4, L40, RTX 40xx", None),
    "sm_90": ("H100, H200", None),
}
# The oldest CUDA that builds for an architecture (default 11.0); CUDA 13 no longer builds below sm_75.
OLDEST_CUDA = {"sm_87": (11, 4), "sm_89": (11, 8), "sm_90": (11, 8)}
OLDEST_CUDA_13_ARCH = 75
VERSION_XYZ = regex.compile(r"\d+\.\d+\.\d+")
VERSION_XY = regex.compile(r"\d+\.\d+")
JETPACK_5 = '{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11.4"}'


def _check_nvidia(arch: str, gpu_code: str, trt_ver: str, cuda_ver: str) -> None:
    """Combinations the agent can run: a real architecture on its host, CUDA ≥ 11 that builds for it, TensorRT ≥ 8."""
    if gpu_code not in GPU_ARCHITECTURES:
        known = ", ".join(f"{k} ({v[0]})" for k, v in GPU_ARCHITECTURES.items())
        raise _invalid(
            f"compiler option 'gpu-code' value '{gpu_code}' is not a GPU architecture we build for; use one of {known}."
        )
    device, host = GPU_ARCHITECTURES[gpu_code]
    if host is not None and host != arch:
        raise _invalid(f"gpu-code {gpu_code} is the integrated GPU of {device}, an ARM64 device: use Arch ARM64.")
    if not VERSION_XYZ.fullmatch(trt_ver):
        raise _invalid(f"compiler option 'trt-ver' must be a TensorRT version x.y.z like 8.5.2, got '{trt_ver}'.")
    if not VERSION_XY.fullmatch(cuda_ver):
        raise _invalid(f"compiler option 'cuda-ver' must be a CUDA version x.y like 11.4, got '{cuda_ver}'.")
    cuda = tuple(int(p) for p in cuda_ver.split("."))
    if cuda[0] < 11 or int(trt_ver.split(".")[0]) < 8:
        raise _invalid(
            f"CUDA {cuda_ver} with TensorRT {trt_ver} is a JetPack 4 / Ubuntu 18.04-era stack, whose Python (3.6–3.8) "
            "cannot run the TVM 0.27 runtime the agent uses (it needs Python ≥ 3.10). Use CUDA ≥ 11 and TensorRT ≥ 8, "
            f"e.g. JetPack 5.1 for Xavier: {JETPACK_5} (or TargetDevice jetson_xavier)."
        )
    oldest = OLDEST_CUDA.get(gpu_code, (11, 0))
    if cuda < oldest:
        raise _invalid(
            f"{gpu_code} ({device}) needs CUDA ≥ {oldest[0]}.{oldest[1]}; cuda-ver {cuda_ver} cannot build for it."
        )
    if cuda[0] >= 13 and int(gpu_code[3:]) < OLDEST_CUDA_13_ARCH:
        raise _invalid(
            f"CUDA {cuda_ver} no longer builds for {gpu_code} ({device}); use the CUDA 11 or 12 of its JetPack/driver."
        )


def _nvidia_options(options: dict[str, Any]) -> tuple[str, str, str]:
    missing = [k for k in NVIDIA_OPTION_KEYS if k not in options]
    if missing:
        raise _invalid(
            f"Accelerator NVIDIA needs the compiler options {', '.join(NVIDIA_OPTION_KEYS)}; missing "
            f'{", ".join(missing)}. Example: {{"gpu-code": "sm_72", "trt-ver": "8.5.2", "cuda-ver": "11.4"}}.'
        )
    values = tuple(_string_option(options, k) for k in NVIDIA_OPTION_KEYS)
    return values  # type: ignore[return-value]


def resolve_target(greengrass: dict[str, Any], options: dict[str, Any] | None = None) -> TargetSpec:
    """Apply the packaging rules: TargetDevice xor TargetPlatform, and the options each allows. `options`: the
    CompilerOptions already parsed (compiler/jobs/plan.py parses them once per job), else parsed here."""
    device, platform = greengrass.get("TargetDevice"), greengrass.get("TargetPlatform")
    options_text = greengrass.get("CompilerOptions")
    if device and platform:
        raise _invalid("give either TargetDevice or TargetPlatform, not both.")
    if not device and not platform:
        raise _invalid("give TargetDevice (jetson_xavier) or TargetPlatform ({Os, Arch[, Accelerator]}).")
    if device:
        if options_text is not None:
            raise _invalid("CompilerOptions must not be given with TargetDevice; the device defines them.")
        target = TargetSpec(arch="aarch64", accelerator="nvidia", gpu_code="sm_72", trt_ver="8.5.2", cuda_ver="11.4")
    else:
        arch = "x86_64" if platform["Arch"] == "X86_64" else "aarch64"
        accelerator = "nvidia" if platform.get("Accelerator") == "NVIDIA" else None
        if options is None:
            options = parse_compiler_options(options_text) if options_text is not None else {}
        nvidia_keys = (*NVIDIA_OPTION_KEYS, TRT_PRECISION_KEY)
        allowed = (nvidia_keys if accelerator else CPU_OPTION_KEYS) + TUNING_OPTION_KEYS
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            kind = "NVIDIA" if accelerator else "CPU"
            raise _invalid(
                f"unknown compiler option(s) {', '.join(unknown)} for a {kind} target; allowed: {', '.join(allowed)}."
            )
        if accelerator:
            gpu_code, trt_ver, cuda_ver = _nvidia_options(options)
            _check_nvidia(arch, gpu_code, trt_ver, cuda_ver)
            precision = options.get(TRT_PRECISION_KEY, "fp32")
            if precision not in TRT_PRECISIONS:
                raise _invalid(f"compiler option '{TRT_PRECISION_KEY}' must be fp32 or fp16, got {precision!r}.")
            target = TargetSpec(
                arch=arch,
                accelerator=accelerator,
                gpu_code=gpu_code,
                trt_ver=trt_ver,
                cuda_ver=cuda_ver,
                trt_precision=precision,
            )
        else:
            mcpu, mattr = _cpu_options(options, arch)
            target = TargetSpec(arch=arch, accelerator=None, mcpu=mcpu, mattr=mattr)
    return target
