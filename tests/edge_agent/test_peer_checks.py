"""Callers are identified (SO_PEERCRED through the peer relay) and the agent opens a shared-memory segment only as
its caller could: a client must not make the agent (root on many devices) read or write what it cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from edge_agent.serving.peer_relay import Caller
from tests.agent_harness import AgentProcess

NOBODY = 65534
SIDE = 64  # the smallest image the agent takes


@pytest.mark.parametrize(
    ("caller", "owner", "group", "mode", "write", "allowed"),
    [
        (Caller(1, 1000, 1000, frozenset()), 1000, 0, 0o600, True, True),  # owner, rw-
        (Caller(1, 1000, 1000, frozenset()), 1000, 0, 0o400, True, False),  # owner, r-- : no write
        (Caller(1, 1000, 1000, frozenset()), 0, 0, 0o600, False, False),  # root's private segment
        (Caller(1, 1000, 1000, frozenset({44})), 0, 44, 0o640, False, True),  # a supplementary group may read
        (Caller(1, 1000, 1000, frozenset({44})), 0, 44, 0o640, True, False),  # … not write
        (Caller(1, 1000, 1000, frozenset()), 0, 0, 0o666, True, True),  # everybody may
        (Caller(1, 0, 0, frozenset()), 1000, 1000, 0o600, True, True),  # root may open anything
    ],
)
def test_a_caller_may_what_its_uid_and_groups_allow(caller, owner, group, mode, write, allowed) -> None:
    assert caller.may(owner, group, mode, write) is allowed


CLIENT = textwrap.dedent(
    """
    import json, os, sys
    import grpc
    sys.path.insert(0, sys.argv[1])
    import edge_agent_pb2 as pb, edge_agent_pb2_grpc as pb_grpc

    address, roots_input, roots_mask, side = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    os.setgroups([]); os.setgid(65534); os.setuid(65534)  # everything imported: now an unprivileged client
    own = f"/lfv-peer-test-{os.getpid()}"  # a segment of this user's, mode 0600 (as shm_open would make it)
    fd = os.open("/dev/shm" + own, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, side * side * 3)

    def call(image, mask=None):
        handle = pb.SharedMemoryHandle(name=image, size=side * side * 3, offset=0)
        params = pb.AnomalyMaskParams(shared_memory_handle=pb.SharedMemoryHandle(
            name=mask, size=side * side * 3, offset=0)) if mask else None
        request = pb.DetectAnomaliesRequest(model_component="com.example.None", anomaly_mask_params=params,
            bitmap=pb.Bitmap(width=side, height=side, shared_memory_handle=handle))
        with grpc.insecure_channel(address) as channel:
            try:
                pb_grpc.EdgeAgentStub(channel).DetectAnomalies(request, timeout=30)
            except grpc.RpcError as error:
                return [error.code().name, error.details()]

    try:
        print(json.dumps({
            "own": call(own),
            "roots": call(roots_input),
            "mask_into_roots": call(own, roots_mask),
        }))
    finally:
        os.close(fd); os.unlink("/dev/shm" + own)
    """
)


def test_an_unprivileged_client_cannot_make_the_agent_touch_segments_it_may_not(client_stubs, tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent runs as root and the client as another user (nobody)")
    stubs = Path(client_stubs[0].__file__).parent
    private = shared_memory.SharedMemory(create=True, size=SIDE * SIDE * 3)  # root's, 0600
    readable = shared_memory.SharedMemory(create=True, size=SIDE * SIDE * 3)
    os.fchmod(readable._fd, 0o644)  # everybody may read it, only root may write it
    try:
        with AgentProcess(tmp_path / "agent") as agent:
            os.chmod(agent.socket_dir, 0o755)  # let the test's unprivileged client connect at all
            os.chmod(agent.socket_path, 0o666)
            done = subprocess.run(
                [sys.executable, "-c", CLIENT, str(stubs), agent.address, "/" + private.name, "/" + readable.name,
                 str(SIDE)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            outcome = json.loads(done.stdout)
            log = agent.log()
    finally:
        for segment in (private, readable):
            segment.close()
            segment.unlink()
    # Its own segment passes the check (the call then fails only because no model has that name).
    assert outcome["own"][0] == "NOT_FOUND", outcome
    assert outcome["roots"][0] == "PERMISSION_DENIED", outcome
    assert f"the caller (uid {NOBODY}, gid {NOBODY}" in outcome["roots"][1] and "may not read" in outcome["roots"][1]
    assert outcome["mask_into_roots"][0] == "PERMISSION_DENIED" and "may not write" in outcome["mask_into_roots"][1]
    assert "Traceback" not in log
