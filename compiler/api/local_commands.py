"""Commands beyond the AWS API: build the bundled reference model, score images with a packaged bundle."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from compiler.api.exit_codes import EXIT_USAGE
from compiler.models.reference_model import build_reference_model
from compiler.models.sample_images import held_out_set, read_rgb, write_samples


def _build_reference_model(args: argparse.Namespace) -> int:
    out = Path(args.output)
    model = build_reference_model(out, seed=args.seed)
    samples = write_samples(held_out_set(args.samples, seed=1000 + args.seed), out / "samples")
    print(f"model:    {model.model_path}")
    print(f"metadata: {model.metadata_path}")
    print(f"samples:  {len(samples)} images in {out / 'samples'}")
    return 0


class ScoreInputError(Exception):
    """A bundle or image `score` cannot use; its text is the one line the user sees."""


def _score_images(arguments: list[str]) -> list[Path]:
    """The image files named, folders expanded to their *.png files; each is checked to be an image OpenCV reads."""
    import cv2

    images = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            images += sorted(path.glob("*.png"))
        elif path.is_file():
            images.append(path)
        else:
            raise ScoreInputError(f"{argument}: no such image file or folder")
    if not images:
        raise ScoreInputError(f"no *.png images in {', '.join(arguments)}")
    for image in images:
        if not cv2.haveImageReader(str(image)):
            raise ScoreInputError(f"{image} is not an image OpenCV can read")
    return images


def _score(args: argparse.Namespace) -> int:
    from edge_agent.bundle.reader import BundleError, open_bundle
    from edge_agent.engines.choice import EngineFactory
    from edge_agent.models.runner import LoadedModel

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        return _score_error(f"--threshold must be from 0 to 1, got {args.threshold}")
    bundle = Path(args.bundle)
    try:
        images = _score_images(args.images)
        if not bundle.exists():
            raise ScoreInputError(f"--bundle {args.bundle}: no such file or folder")
        with tempfile.TemporaryDirectory() as unpack:
            try:
                model, choice = LoadedModel.best(EngineFactory(open_bundle(bundle, Path(unpack))))
            except (BundleError, OSError) as exc:
                raise ScoreInputError(f"--bundle {args.bundle}: {exc}") from None
            print(f"Running on {choice.describe()}.", file=sys.stderr)
            rows = []
            for path in images:
                try:
                    rgb = read_rgb(path)
                except ValueError as exc:
                    raise ScoreInputError(str(exc)) from None
                rows.append((path, model.detect(rgb, args.threshold)))
    except ScoreInputError as exc:
        return _score_error(str(exc))
    width = max(28, *(len(str(path)) for path, _ in rows))
    print(f"{'image':<{width}} {'score':>6}  {'threshold':>9}  result     confidence")
    for path, result in rows:
        verdict = "ANOMALOUS" if result.is_anomalous else "normal"
        print(
            f"{path!s:<{width}} {result.anomaly_score:6.3f}  {result.anomaly_threshold:9.3f}  "
            f"{verdict:<10} {result.confidence:.3f}"
        )
    return 0


def _score_error(message: str) -> int:
    print(f"lookout-edge score: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _build_agent_component(args: argparse.Namespace) -> int:
    from compiler.greengrass.agent_component import BuildError, build_agent_component, build_project_wheel, resolve

    prefix = args.prefix if not args.prefix or args.prefix.endswith("/") else args.prefix + "/"
    try:
        if args.resolve_only:
            with tempfile.TemporaryDirectory() as wheels:
                build_project_wheel(Path(wheels))
                for arch in args.arch:
                    plan = resolve(arch, args.python, Path(wheels))
                    print(f"{arch} / Python {args.python}: " + ", ".join(f"{n}=={v}" for n, v in sorted(plan.items())))
            return 0
        built, recipe = build_agent_component(args.arch, args.python, Path(args.output), args.bucket, prefix)
    except BuildError as exc:
        print(f"build-agent-component: {exc}", file=sys.stderr)
        return 1
    for artifact in built:
        print(f"{artifact.arch}: {artifact.archive} ({artifact.size_bytes / 2**20:.1f} MiB) → {artifact.uri}")
    print(f"recipe:  {recipe} (and .json)")
    return _publish_agent_component(recipe, built) if args.publish else 0


def _publish_agent_component(recipe_path: Path, built: list) -> int:
    """Upload the wheelhouses to their S3 URIs and register the recipe with Greengrass V2."""
    import yaml
    from botocore.exceptions import BotoCoreError, ClientError

    from compiler.api.errors import ValidationException
    from compiler.greengrass.cloud_registration import RegistrationError, publish_component
    from compiler.greengrass.s3_store import S3OutputError
    from compiler.settings import Settings

    recipe = yaml.safe_load(recipe_path.read_text())
    try:
        arn = publish_component(recipe, [(a.archive, a.uri) for a in built], Settings.from_env().region)
    except ValidationException as exc:
        print(f"build-agent-component: {exc.message}", file=sys.stderr)
        return 1
    except (RegistrationError, S3OutputError, BotoCoreError, ClientError) as exc:
        print(f"build-agent-component: {exc}", file=sys.stderr)
        return 1
    print(f"published: {arn}")
    return 0


def _install_cuda_toolkit(args: argparse.Namespace) -> int:
    from compiler.build.cuda_toolkits import install_toolkit, installed_toolkits
    from compiler.settings import Settings

    data_dir = Settings.from_env(args.data_dir).data_dir
    try:
        folder = install_toolkit(args.major, data_dir)
    except OSError as exc:
        print(f"install-cuda-toolkit: {exc}", file=sys.stderr)
        return 1
    print(f"CUDA {args.major} compiler installed in {folder}; compilers for packaging jobs now:")
    for toolkit in installed_toolkits(data_dir):
        print(f"  {toolkit.describe()}")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser(
        "build-reference-model",
        help="build the bundled reference model (ONNX + metadata + sample images)",
        description="Builds the ResNet-18-sized PaDiM-style reference model from code (no downloads), fits it on "
        "normal brick-texture images, and writes held-out normal and defective sample images.",
    )
    build.add_argument("--output", required=True, help="folder to write model.onnx, metadata.json and samples/")
    build.add_argument("--seed", type=int, default=0, help="seed for weights and images (default 0)")
    build.add_argument("--samples", type=int, default=4, help="sample images per class (default 4)")
    build.set_defaults(run=_build_reference_model)

    score = subparsers.add_parser(
        "score",
        help="score images with a packaged model bundle (model.zip or its folder)",
        description="Loads the compiled module of a bundle with the TVM runtime (after checking every file's "
        "sha256) and prints each image's anomaly score.",
    )
    score.add_argument("--bundle", required=True, help="model.zip from the artifacts, or an unpacked bundle folder")
    score.add_argument("--threshold", type=float, help="override the model's anomaly threshold (0..1)")
    score.add_argument("images", nargs="+", help="image files, or folders of *.png")
    score.set_defaults(run=_score)

    toolkit = subparsers.add_parser(
        "install-cuda-toolkit",
        help="install a CUDA major's compiler (NVRTC + headers) into the data directory, beside any other major",
        description="pip-installs nvidia-cuda-nvrtc-cuMAJOR and nvidia-cuda-cccl-cuMAJOR into "
        "DATA_DIR/cuda-toolkits/cudaMAJOR, where packaging jobs find it. Each CUDA major has its own folder, so one "
        "installation packages for Jetson Xavier (CUDA 11.4) and for CUDA 12 servers alike. Needs the package "
        "registry (pip's configuration applies).",
    )
    toolkit.add_argument("major", type=int, choices=[11, 12], help="the CUDA major version of the devices")
    toolkit.set_defaults(run=_install_cuda_toolkit)

    agent = subparsers.add_parser(
        "build-agent-component",
        help="build the Edge Agent's Greengrass component (offline wheelhouse + recipe)",
        description="Downloads the agent and every runtime dependency as wheels for the device's architecture and "
        "Python, zips them per architecture, and writes the agent component's recipe, in the greengrass-cli layout "
        "(recipes/, artifacts/). The recipe's Install step creates a virtual environment with pip --no-index, so "
        "the device needs no network.",
    )
    agent.add_argument(
        "--arch",
        nargs="+",
        choices=["aarch64", "x86_64"],
        default=["aarch64"],
        help="device architectures (default aarch64: Jetson and other ARM64 devices)",
    )
    agent.add_argument("--python", default="3.10", help="the device's Python, e.g. 3.10 on JetPack 5 (default)")
    agent.add_argument("--output", default="agent-component", help="folder for recipes/ and artifacts/")
    agent.add_argument("--bucket", default="my-bucket", help="S3 bucket named in the recipe's artifact URIs")
    agent.add_argument("--prefix", default="lookout-edge/", help="S3 key prefix for the artifacts")
    agent.add_argument(
        "--publish",
        action="store_true",
        help="also upload the artifacts to those S3 URIs and register the component with Greengrass V2 "
        "(standard AWS configuration; the bucket must be in LOOKOUT_EDGE_REGION)",
    )
    agent.add_argument(
        "--resolve-only",
        action="store_true",
        help="only print what would be installed on each architecture (no downloads)",
    )
    agent.set_defaults(run=_build_agent_component)
