"""A stand-in for the Greengrass V2 cloud API and the IoT data plane's shadows, as boto3's greengrassv2 and
iot-data clients speak them (rest-json): the component-version calls a packaging job makes, deployments, core
devices of thing groups, and named shadows. A version is REQUESTED when created and DEPLOYABLE when next described;
a recipe whose artifact URI contains "unreachable" goes FAILED with the artifact error Greengrass reports. moto has
no greengrassv2, hence this; it serves on loopback in a thread of the test process.

    with GreengrassCloudStandin(region, account) as cloud:  # cloud.endpoint, .components, .deployments, …
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.loopback import asgi_server


class GreengrassCloudStandin:
    def __init__(self, region: str, account: str) -> None:
        self.region, self.account = region, account
        self.components: dict[str, dict[str, Any]] = {}  # arn → {"recipe", "tags", "state", "errors"}
        self.deployments: list[dict[str, Any]] = []  # CreateDeployment requests with their deploymentId, in order
        self.groups: dict[str, list[str]] = {}  # thing-group ARN → core device thing names
        self.shadows: dict[tuple[str, str], dict[str, Any]] = {}  # (thing, shadow name) → the shadow document
        self.endpoint = ""
        self._app = Starlette(
            routes=[
                Route("/greengrass/v2/createComponentVersion", self._create, methods=["POST"]),
                Route("/greengrass/v2/components/{arn:path}/metadata", self._describe, methods=["GET"]),
                Route("/greengrass/v2/deployments", self._create_deployment, methods=["POST"]),
                Route("/greengrass/v2/deployments", self._list_deployments, methods=["GET"]),
                Route("/greengrass/v2/deployments/{deployment_id}", self._get_deployment, methods=["GET"]),
                Route("/greengrass/v2/coreDevices", self._list_core_devices, methods=["GET"]),
                Route("/things/{thing}/shadow", self._get_shadow, methods=["GET"]),
            ]
        )
        self._serving = asgi_server(self._app)

    def __enter__(self) -> GreengrassCloudStandin:
        self.endpoint = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(*exc)

    def arn(self, name: str, version: str) -> str:
        return f"arn:aws:greengrass:{self.region}:{self.account}:components:{name}:versions:{version}"

    def _error(self, code: str, status: int, message: str, **members: str) -> JSONResponse:
        return JSONResponse({"message": message, **members}, status, headers={"x-amzn-ErrorType": code})

    async def _create(self, request: Request) -> JSONResponse:
        body = await request.json()
        recipe = json.loads(base64.b64decode(body["inlineRecipe"]))
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        arn = self.arn(name, version)
        if arn in self.components:
            return self._error("ConflictException", 409, f"Component {arn} already exists", resourceId=arn,
                               resourceType="COMPONENT_VERSION")  # fmt: skip
        uris = [a["URI"] for m in recipe.get("Manifests", []) for a in m.get("Artifacts", [])]
        errors = {uri: "Access denied to the artifact" for uri in uris if "unreachable" in uri}
        self.components[arn] = {"recipe": recipe, "tags": body.get("tags", {}), "state": "REQUESTED",
                                "errors": errors}  # fmt: skip
        return JSONResponse(
            {"arn": arn, "componentName": name, "componentVersion": version, "creationTimestamp": time.time(),
             "status": {"componentState": "REQUESTED"}},
            201,
        )  # fmt: skip

    async def _describe(self, request: Request) -> JSONResponse:
        arn = request.path_params["arn"]
        component = self.components.get(arn)
        if component is None:
            return self._error("ResourceNotFoundException", 404, f"{arn} not found", resourceId=arn,
                               resourceType="COMPONENT_VERSION")  # fmt: skip
        component["state"] = "FAILED" if component["errors"] else "DEPLOYABLE"
        status = {"componentState": component["state"], **({"errors": component["errors"],
                  "message": "Artifacts could not be read"} if component["errors"] else {})}  # fmt: skip
        recipe = component["recipe"]
        return JSONResponse({"arn": arn, "componentName": recipe["ComponentName"],
                             "componentVersion": recipe["ComponentVersion"], "status": status,
                             "tags": component["tags"]})  # fmt: skip

    async def _create_deployment(self, request: Request) -> JSONResponse:
        deployment = {**await request.json(), "deploymentId": f"deployment-{len(self.deployments) + 1}"}
        self.deployments.append(deployment)
        return JSONResponse({"deploymentId": deployment["deploymentId"]}, 201)

    async def _list_deployments(self, request: Request) -> JSONResponse:
        target = request.query_params.get("targetArn")
        matching = [d for d in self.deployments if d["targetArn"] == target]
        if request.query_params.get("historyFilter") == "LATEST_ONLY":
            matching = matching[-1:]
        listed = [{"deploymentId": d["deploymentId"], "targetArn": d["targetArn"]} for d in matching]
        return JSONResponse({"deployments": listed})

    async def _get_deployment(self, request: Request) -> JSONResponse:
        found = [d for d in self.deployments if d["deploymentId"] == request.path_params["deployment_id"]]
        if not found:
            return self._error("ResourceNotFoundException", 404, "no such deployment", resourceId="-",
                               resourceType="DEPLOYMENT")  # fmt: skip
        return JSONResponse(found[0])

    async def _list_core_devices(self, request: Request) -> JSONResponse:
        names = self.groups.get(request.query_params.get("thingGroupArn", ""), [])
        page = int(request.query_params.get("nextToken", "0"))  # two devices a page: paging is exercised
        devices = [{"coreDeviceThingName": n, "status": "HEALTHY"} for n in names[page : page + 2]]
        more = {"nextToken": str(page + 2)} if page + 2 < len(names) else {}
        return JSONResponse({"coreDevices": devices, **more})

    async def _get_shadow(self, request: Request) -> JSONResponse:
        key = (request.path_params["thing"], request.query_params.get("name", ""))
        if key not in self.shadows:
            return self._error("ResourceNotFoundException", 404, f"No shadow exists with name: '{key[1]}'")
        return JSONResponse(self.shadows[key])
