"""A factory-floor client written exactly as against AWS's Edge Agent: stubs generated from
protos/edge-agent.proto, DescribeModel → StartModel if stopped → wait for RUNNING → DetectAnomalies.
From the repository's top folder (the stubs go beside this script):

    python -m grpc_tools.protoc --proto_path=protos --python_out=examples --grpc_python_out=examples edge-agent.proto
    python examples/detect_anomalies.py --model-component com.example.CircuitBoards image.png [...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import grpc

try:
    import edge_agent_pb2 as pb
    import edge_agent_pb2_grpc as pb_grpc
except ModuleNotFoundError:
    sys.exit(
        f"{sys.argv[0]}: the client stubs edge_agent_pb2.py and edge_agent_pb2_grpc.py are not beside this script; "
        f"generate them with: python -m grpc_tools.protoc --proto_path=protos --python_out={Path(__file__).parent} "
        f"--grpc_python_out={Path(__file__).parent} edge-agent.proto"
    )

AWS_DEFAULT_SOCKET = "unix:///tmp/aws.iot.lookoutvision.EdgeAgent.sock"


def wait_until_running(stub: pb_grpc.EdgeAgentStub, component: str, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        description = stub.DescribeModel(pb.DescribeModelRequest(model_component=component)).model_description
        if description.status == pb.RUNNING:
            return
        if description.status == pb.STOPPED:
            stub.StartModel(pb.StartModelRequest(model_component=component))
        elif description.status == pb.FAILED:
            raise SystemExit(f"{component} failed: {description.status_message}")
        print(f"{component}: {pb.ModelStatus.Name(description.status)} ({description.status_message})")
        time.sleep(1)
    raise SystemExit(f"{component} did not start within {timeout:.0f} s")


def image_paths(arguments: list[str]) -> list[str]:
    paths = []
    for argument in arguments:
        folder = Path(argument)
        if folder.is_dir():
            paths += sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        else:
            paths.append(argument)
    return paths


def read_rgb(path: str) -> Any:
    """The image as RGB888 (what the agent expects); exits naming the file if it is not one OpenCV reads."""
    if not Path(path).is_file():
        sys.exit(f"{path}: no such image file")
    bgr = cv2.imread(path)
    if bgr is None:
        sys.exit(f"{path}: not an image file OpenCV can read (PNG, JPEG, BMP, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--socket",
        default=os.environ.get("LOOKOUT_EDGE_AGENT_SOCKET", AWS_DEFAULT_SOCKET),
        help=f"the agent's socket (default: $LOOKOUT_EDGE_AGENT_SOCKET, else {AWS_DEFAULT_SOCKET})",
    )
    parser.add_argument("--model-component", required=True)
    parser.add_argument("--stop", action="store_true", help="stop the model afterwards")
    parser.add_argument("images", nargs="+", help="image files, or folders of .png/.jpg images")
    args = parser.parse_args()
    # Masks come back in the reply; raise gRPC's 4 MiB default so large images' masks fit (up to 48 MiB).
    with grpc.insecure_channel(args.socket, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.EdgeAgentStub(channel)
        wait_until_running(stub, args.model_component)
        for path in image_paths(args.images):
            rgb = read_rgb(path)
            bitmap = pb.Bitmap(width=rgb.shape[1], height=rgb.shape[0], byte_data=rgb.tobytes())
            request = pb.DetectAnomaliesRequest(model_component=args.model_component, bitmap=bitmap)
            result = stub.DetectAnomalies(request).detect_anomaly_result
            areas = ", ".join(f"{a.name} {a.pixel_anomaly.total_percentage_area:.2%}" for a in result.anomalies)
            verdict = "ANOMALOUS" if result.is_anomalous else "normal"
            print(
                f"{path}: {verdict} score {result.anomaly_score:.3f} (threshold {result.anomaly_threshold:.2f}, "
                f"confidence {result.confidence:.3f}) {areas}"
            )
        if args.stop:
            stub.StopModel(pb.StopModelRequest(model_component=args.model_component))


if __name__ == "__main__":
    main()
