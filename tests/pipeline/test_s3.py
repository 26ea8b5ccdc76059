"""Run directories on S3 through its real protocol: s3fs against moto's standalone S3 server on loopback.

`tests/pipeline/test_fsspec_storage.py` covers the storage rules on `memory://`; here the same demo
recipe goes through HTTP, botocore signing and s3fs's listings, in CLI subprocesses and Ray workers.

Credentials are dummies (`testing` / `testing`, region us-east-1) that only moto's server accepts; it
listens on 127.0.0.1 and stops with the module. Every process finds it through `AWS_ENDPOINT_URL`, which
botocore reads when s3fs makes its client (s3fs 2026.9 also honours `AWS_ENDPOINT_URL_S3` and fsspec's
`FSSPEC_S3_ENDPOINT_URL`). The AWS config and credential files point at nothing, so no user profile or
real account is ever read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from upath import UPath

from synthvlm import pipeline
from tests.pipeline.helpers import cli, cli_process, kill_when, tree_digest

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fault  # process-level fault trials: make test-all
DEMO = REPO / "configs" / "demo.yaml"
BUCKET = "synthvlm-test"
SKIP = ("models/",)  # a remote run builds its models in the local cache instead
GENERATE_TASKS = 6


def _done_records(root: Path | UPath) -> dict[str, list[str]]:
    """Completion record names per stage (their content holds timings, so names are compared)."""
    return {stage: sorted(p.name for p in (root / stage / "done").glob("*.json")) for stage in pipeline.ORDER}


def _keys(fs: Any, prefix: str) -> list[str]:
    """Every object key under `prefix`, listed afresh (another process writes the bucket)."""
    fs.invalidate_cache()
    return fs.find(f"{BUCKET}/{prefix}")


def _digest(fs: Any, prefix: str) -> dict[str, str]:
    """`tree_digest` of an S3 prefix, after dropping s3fs's cached listings."""
    fs.invalidate_cache()
    return tree_digest(UPath(f"s3://{BUCKET}/{prefix}"), skip=SKIP)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3 server on a free loopback port, a bucket on it, and the environment that points at it."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # not a log record per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    nothing = tmp_path_factory.mktemp("aws") / "absent"
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_CONFIG_FILE": str(nothing),
                "AWS_SHARED_CREDENTIALS_FILE": str(nothing),
                "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")),  # local_root() of each bucket run
                "RAY_AUTH_MODE": "disabled",
                "RAY_worker_niceness": "0",  # Ray nices its workers; on a busy shared box they starve
            }.items():
                mp.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL"):
                mp.delenv(name, raising=False)
            fs = UPath(f"s3://{BUCKET}").fs  # the instance the UPaths below use: one cache to invalidate
            fs.mkdir(BUCKET)
            yield fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()  # their clients point at the server stopping now
        server.stop()
        werkzeug.setLevel(level)


@pytest.fixture(scope="module")
def local_run(recipe_run: Path) -> Path:
    """The reference: the same recipe on a local path, in-process."""
    return recipe_run


@pytest.fixture(scope="module")
def s3_run(s3: Any) -> dict[str, Any]:
    """`synthvlm run configs/demo.yaml --run s3://synthvlm-test/run` in a subprocess, SIGKILLed once the
    first generate shard has committed, then run again to the end; what the bucket held after the kill
    is kept for the tests. One run serves both: resuming must give the bytes a clean run gives."""
    url = f"s3://{BUCKET}/run"

    def first_generate_shard_committed() -> bool:
        time.sleep(0.02)  # a listing every ~20 ms leaves the server to the run's own requests
        return any(k.rsplit("/", 1)[-1].startswith("generate-") for k in _keys(s3, "run/generate/done"))

    kill_when(["run", str(DEMO), "--run", url, "-q"], first_generate_shard_committed, timeout=600)
    keys = _keys(s3, "run")
    # The batches committed inside the killed shard, read now: the rerun deletes them once it is done.
    parts = {k.removeprefix(f"{BUCKET}/run/"): s3.cat(k) for k in keys if "/parts/" in k}
    killed = {"keys": keys, "digest": _digest(s3, "run"), "parts": parts}
    result = cli("run", str(DEMO), "--run", url, "-q")
    assert result.returncode == 0, result.stderr
    assert f"run directory: {url}" in result.stdout
    return {"url": url, "killed": killed}


def test_sigkill_mid_generate_leaves_only_whole_objects(local_run, s3_run):
    keys = s3_run["killed"]["keys"]
    assert not [k for k in keys if ".tmp-" in k]
    assert f"{BUCKET}/run/generate/complete.json" not in keys
    done = [k for k in keys if k.startswith(f"{BUCKET}/run/generate/done/generate-")]
    assert 1 <= len(done) < GENERATE_TASKS  # killed inside the stage
    # No partial object: every object visible after the kill already has the finished run's bytes.
    reference = tree_digest(local_run, skip=SKIP)
    partial = dict(s3_run["killed"]["digest"])
    assert partial.pop("driver.lock")  # the killed driver's lock; the rerun took it over (its pid is gone)
    # The killed shard's committed batches are whole objects too (a batch's rows table is its commit point,
    # written after its images), and no finished run keeps them.
    parts = s3_run["killed"]["parts"]
    assert sorted(parts) == sorted(k for k in partial if "/parts/" in k)
    for key, data in parts.items():
        partial.pop(key)
        if key.endswith(".parquet"):
            assert pq.read_table(pa.BufferReader(data)).num_rows > 0, key
            assert key.replace(".rows.parquet", ".images.tar") in parts, key  # written before its rows
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                assert all(tar.extractfile(m).read() for m in tar.getmembers()), key
    assert {k: reference.get(k) for k in partial} == partial
    assert sum(k.startswith("generate/images/") for k in partial) >= len(done)
    assert not any(k.startswith(("score/", "select/", "export/")) for k in partial)


def test_resumed_s3_run_matches_local_run_byte_for_byte(s3, local_run, s3_run):
    local, remote = tree_digest(local_run, skip=SKIP), _digest(s3, "run")
    assert sorted(remote) == sorted(local)
    assert remote == local
    assert sum(k.startswith("generate/images/") for k in remote) == GENERATE_TASKS
    assert _done_records(UPath(s3_run["url"])) == _done_records(local_run)
    keys = _keys(s3, "run")
    assert not [k for k in keys if ".tmp-" in k]
    assert not [k for k in keys if k.startswith(f"{BUCKET}/run/models/")]
    # One PUT per object: its ETag is the MD5 of the bytes (a multipart upload's would end in -N).
    image = local_run / "generate" / "images" / "part-00000.tar"
    etag = s3.info(f"{BUCKET}/run/generate/images/part-00000.tar")["ETag"].strip('"')
    assert etag == hashlib.md5(image.read_bytes()).hexdigest()


def test_status_and_validate_read_the_bucket(local_run, s3_run):
    url = s3_run["url"]
    result = cli("status", url, "--json")
    assert result.returncode == 0, result.stderr
    remote = json.loads(result.stdout)["stages"]
    local = pipeline.status(local_run)["stages"]
    for f in (*remote.values(), *local.values()):
        f["extra"].pop("model_seconds", None)  # wall time
    assert remote == local
    assert remote["select"]["kept"] == 24 and remote["export"]["tasks_done"] == 10
    result = cli("validate", f"{url}/export")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{url}/export/{fmt}: ok" for fmt in ("llava", "parquet", "webdataset")
    ]


def test_ray_workers_sharing_the_bucket_give_the_same_bytes(s3, local_run, tmp_path):
    """`--executor ray` with 2 CPU actors: each worker process opens the bucket through the same endpoint."""
    recipe = yaml.safe_load(DEMO.read_text())
    recipe["ingest"]["inputs"] = [str(DEMO.resolve().parent / name) for name in recipe["ingest"]["inputs"]]
    recipe["ray"] = {"actors": 2, "num_cpus": 1}
    config = tmp_path / "demo-ray.yaml"
    config.write_text(yaml.safe_dump(recipe))
    url = f"s3://{BUCKET}/ray"
    result = cli_process("run", str(config), "--run", url, "--executor", "ray", "-q")
    assert result.returncode == 0, result.stderr
    assert _digest(s3, "ray") == tree_digest(local_run, skip=SKIP)
    assert _done_records(UPath(url)) == _done_records(local_run)
    assert not [k for k in _keys(s3, "ray") if ".tmp-" in k]
