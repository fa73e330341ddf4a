"""``wedguard copy DIR s3://bucket/prefix`` end to end: the command in a subprocess, an
S3-compatible server (moto's) on 127.0.0.1 behind the fault-injecting proxy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_s3 import FaultProxy, fault_proxy, s3_client, s3_endpoint

__all__ = ["s3_endpoint"]  # the module-scoped server fixture, used by name

SRC = str(Path(__file__).resolve().parent.parent / "src")
QUIET = 'sources = []\n[calendar]\npreset = "none"\n'
MiB = 2**20


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with fault_proxy(s3_endpoint, stall_seconds=2.0) as p:
        yield p


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "c-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def env(tmp_path: Path, proxy: FaultProxy) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("WEDGUARD_", "AWS_"))}
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    e.pop("XDG_RUNTIME_DIR", None)
    e.update(
        AWS_ENDPOINT_URL=proxy.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        # each failure reaches the breaker at once
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
    )
    return e


def copy(env: dict[str, str], tmp_path: Path, src: Path, url: str) -> tuple[int, dict[str, Any]]:
    config = tmp_path / "wedguard.toml"
    config.write_text(QUIET)
    out = subprocess.run(
        [sys.executable, "-m", "wedguard", "copy", str(src), url, "-c", str(config), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, json.loads(out.stdout)


def tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.jpg": os.urandom(100_000),
        "b.jpg": os.urandom(1000),
        "albums/2026/c.jpg": os.urandom(50_000),
        "db/app.dump": os.urandom(9 * MiB),  # two parts of 8 MiB
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def objects(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    out = {}
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        out[item["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return out


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def test_copy_a_tree_to_s3_then_skip_it_then_send_only_what_changed(
    env: dict[str, str], tmp_path: Path, proxy: FaultProxy, bucket: str, s3_endpoint: str
) -> None:
    src = tmp_path / "photos"
    files = tree(src)
    client = s3_client(s3_endpoint)

    code, report = copy(env, tmp_path, src, f"s3://{bucket}/nightly/")
    assert code == 0, report
    assert (report["copied"], report["skipped"], report["failed"]) == (4, 0, [])
    assert report["bytes"] == sum(len(d) for d in files.values())
    assert report["report"]["bytes"] >= report["bytes"]
    assert objects(client, bucket, "nightly/") == digests(files)
    assert sorted(proxy.part_puts()) == [1, 1, 1, 1, 2]

    proxy.clear()
    code, report = copy(env, tmp_path, src, f"s3://{bucket}/nightly")
    assert code == 0
    assert (report["copied"], report["skipped"], report["bytes"]) == (0, 4, 0)
    assert proxy.count(lambda r: r.method in ("PUT", "POST")) == 0  # nothing sent again

    files["b.jpg"] = os.urandom(1001)
    (src / "b.jpg").write_bytes(files["b.jpg"])
    proxy.clear()
    code, report = copy(env, tmp_path, src, f"s3://{bucket}/nightly")
    assert (code, report["copied"], report["skipped"]) == (0, 1, 3)
    assert objects(client, bucket, "nightly/") == digests(files)


def test_copy_to_s3_resumes_a_file_that_failed_half_way(
    env: dict[str, str], tmp_path: Path, proxy: FaultProxy, bucket: str, s3_endpoint: str
) -> None:
    src = tmp_path / "photos"
    files = tree(src)
    proxy.rule = lambda r: "500" if r.part == 2 else None
    code, report = copy(env, tmp_path, src, f"s3://{bucket}/n")
    assert code == 1  # a file failed, the others went
    assert report["copied"] == 3
    assert [line.split(":")[0] for line in report["failed"]] == [str(src / "db/app.dump")]
    assert list((tmp_path / "run" / "s3-uploads").glob("*.wedguard-upload.json"))

    proxy.rule = None
    proxy.clear()
    code, report = copy(env, tmp_path, src, f"s3://{bucket}/n")
    assert (code, report["copied"], report["skipped"]) == (0, 1, 3)
    assert proxy.part_puts() == [2]  # part 1 was already there
    assert report["bytes"] == 1 * MiB
    assert objects(s3_client(s3_endpoint), bucket, "n/") == digests(files)
    assert not list((tmp_path / "run" / "s3-uploads").glob("*.json"))


def test_copy_to_a_failing_s3_opens_the_circuit_exit_4(
    env: dict[str, str], tmp_path: Path, proxy: FaultProxy, bucket: str
) -> None:
    src = tmp_path / "photos"
    tree(src)
    proxy.mode = "503"
    code, report = copy(env, tmp_path, src, f"s3://{bucket}/n")
    assert code == 4
    assert len(report["failed"]) == 3
    assert "circuit 'guard' is open" in report["error"]
    assert len(proxy.requests) == 3  # one per failed file, none once it opened


def test_copy_to_a_bad_s3_url_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    config = tmp_path / "wedguard.toml"
    config.write_text(QUIET)
    out = subprocess.run(
        [sys.executable, "-m", "wedguard", "copy", str(src), "s3://", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "s3://" in out.stderr
