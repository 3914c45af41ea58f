r"""Extracts, from a botocore wheel that still ships `lookoutvision` (≤ 1.35), the parts of its service model the
tests compare `lookout-edge service-model` with (tests/compiler/test_http_face.py): each operation's HTTP binding,
input members with their locations, requiredness, and every shape those members reach (type and constraints).

    pip download --no-deps -d /tmp/bc botocore==1.35.99
    python scripts/botocore-reference.py /tmp/bc/botocore-1.35.99-py3-none-any.whl \
        > tests/data/botocore-1.35-lookoutvision.json
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile

from compiler.api.http_binding import http_operations

MODEL = "botocore/data/lookoutvision/2020-11-20/service-2.json.gz"
CONSTRAINTS = ("type", "min", "max", "pattern", "enum", "required")


def reference(model: dict) -> dict:
    shapes, operations, reached = model["shapes"], {}, {}

    def reach(name: str) -> None:
        if name in reached:
            return
        shape = shapes[name]
        reached[name] = {k: shape[k] for k in CONSTRAINTS if k in shape}
        if "members" in shape:
            reached[name]["members"] = {m: ref["shape"] for m, ref in shape["members"].items()}
            for ref in shape["members"].values():
                reach(ref["shape"])
        if "member" in shape:
            reached[name]["member"] = shape["member"]["shape"]
            reach(shape["member"]["shape"])

    for name in http_operations():
        operation = model["operations"][name]
        request = shapes[operation["input"]["shape"]]
        operations[name] = {
            "http": operation["http"],
            "required": request.get("required", []),
            "input": {
                m: {k: v for k, v in ref.items() if k != "documentation"} for m, ref in request["members"].items()
            },
        }
        for ref in request["members"].values():
            reach(ref["shape"])
    return {"metadata": model["metadata"], "operations": operations, "shapes": dict(sorted(reached.items()))}


if __name__ == "__main__":
    with zipfile.ZipFile(sys.argv[1]) as wheel:
        print(json.dumps(reference(json.loads(gzip.decompress(wheel.read(MODEL)))), indent=1, sort_keys=True))
