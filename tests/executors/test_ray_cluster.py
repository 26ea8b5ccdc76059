"""The Ray executor on a real multi-node cluster: a worker node lost mid-generate, the driver killed
mid-generate; both runs finish with the bytes of a local run of the same recipe.

The cluster is Ray's own test cluster on this machine (`ray.cluster_utils.Cluster`): a head node with no
CPUs (only the driver connects there) and two worker nodes of one CPU each, every node its own raylet.
The node-loss test runs generate as a stage that also notes which worker process starts which shard, so
it removes a node in the middle of a shard and can tell which shard was lost and where it ran again.
A sampler adds up the resident memory of this process and every process under it or in the cluster's
session (raylets, GCS, workers, CLI drivers) and keeps the peak, which the module prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthvlm import pipeline
from synthvlm.config import load_config
from synthvlm.core.driver import run_stage
from synthvlm.core.stage import Task, TaskStats
from synthvlm.executors.ray import RayExecutor
from synthvlm.stages.generate import GenerateStage
from tests.pipeline.helpers import cli_process, done_count, kill_when, tmp_exists, tree_digest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fault  # process-level fault trials: make test-all
DEMO = REPO / "configs" / "demo.yaml"
SKIP = ("models/",)
GENERATE_TASKS = 8  # 11 captions kept x 2 candidates, 3 images per shard (each a batch of one)
OBJECT_STORE = 100 * 2**20  # per node; the shards travel as file paths, not objects
MEMORY_LIMIT = 12 * 2**30  # the machine has 24 GiB; the whole cluster must stay well inside it


class PeakMemory(threading.Thread):
    """Samples the summed RSS of this process's tree and of the Ray session's processes; keeps the peak.

    RSS counts shared pages once per process, so the sum is an upper bound of what the tree holds.
    """

    def __init__(self, marker: str, *, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil, self.marker, self.interval = psutil, marker, interval
        self.peak, self.samples = 0, 0
        self._halt = threading.Event()

    def total(self) -> int:
        psutil = self.psutil
        root = psutil.Process()
        procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
        for p in psutil.process_iter(["cmdline"]):
            if p.pid not in procs and self.marker in " ".join(p.info["cmdline"] or ()):
                procs[p.pid] = p
        total = 0
        for p in procs.values():
            try:
                total += p.memory_info().rss
            except psutil.Error:  # ended between the listing and the reading
                pass
        return total

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self.total())
            self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("psutil")
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setenv("RAY_worker_niceness", "0")  # Ray nices its workers; on a busy shared box they starve
        # workers import this module to unpickle the traced generate stage below
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
        )
        memory = PeakMemory(cluster.head_node.get_session_dir_path())
        memory.start()
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.memory = memory
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
            memory.stop()
            reporter = request.config.pluginmanager.getplugin("terminalreporter")
            line = (
                f"ray cluster tests: peak RSS of all processes {memory.peak / 2**30:.2f} GiB "
                f"({memory.samples} samples)"
            )
            if reporter is not None:
                reporter.write_line(line)


@pytest.fixture(scope="module")
def recipe(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo recipe on its first 12 captions (eight generate shards of three batches of one image, so a
    shard lost mid-way has batches committed), joining the test cluster with two one-CPU actors of one
    torch thread each."""
    data = yaml.safe_load(DEMO.read_text())
    data["ingest"]["inputs"] = [str(DEMO.resolve().parent / name) for name in data["ingest"]["inputs"]]
    data["ingest"]["limit"] = 12
    data["generate"]["images_per_shard"] = 3
    data["generate"]["batch_size"] = 1
    data["select"]["top_k"] = 6
    data["export"]["rows_per_shard"] = 4
    data["ray"] = {"address": cluster.address, "actors": 2, "num_cpus": 1, "threads": 1}
    path = tmp_path_factory.mktemp("recipe") / "demo-ray.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def reference(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same recipe on the local executor, in a process of one torch thread as the actors have."""
    run = tmp_path_factory.mktemp("local") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "synthvlm", "run", str(recipe), "--run", str(run), "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert done_count(run / "generate", "generate") == GENERATE_TASKS
    return run


def _node_processes(node: Any) -> list[Any]:
    """A worker node's raylet and every process under it (its workers)."""
    import psutil
    from ray._private import ray_constants

    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    return [raylet, *raylet.children(recursive=True)]


class TracedGenerate(GenerateStage):
    """Generate that notes which worker process starts which shard, in a file beside the run (not in it),
    so the test knows what a node was running when it is removed; the shard's bytes are generate's own."""

    def run_task(self, task: Task) -> TaskStats:
        with open(self.run_dir.parent / "started", "a") as fh:
            fh.write(f"{task.index} {os.getpid()}\n")
        return super().run_task(task)


def _started(run: Path) -> list[tuple[int, int]]:
    """(shard, worker pid) of every start of a generate shard, in order."""
    path = run.parent / "started"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(i), int(pid)) for i, pid in (line.split() for line in lines if line.count(" ") == 1)]


class NodeKiller(threading.Thread):
    """Once a generate shard has committed, removes a worker node whose actor is in the middle of another
    one (some of its batches committed) and SIGKILLs whatever of that node is still alive (a node that is
    gone runs nothing).

    `lost` are the shards that node was running, `parts` the batches each had committed when it died.
    """

    def __init__(self, cluster: Any, run: Path) -> None:
        super().__init__(daemon=True)
        self.cluster, self.run_dir, self.generate = cluster, run, run / "generate"
        self.lost: list[int] = []
        self.parts: dict[int, int] = {}
        self.killed_pids: set[int] = set()
        self.done_at_kill: int | None = None
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # reported by the test, which runs in the main thread
            self.error = f"{type(exc).__name__}: {exc}"

    def _done(self, shard: int) -> bool:
        return (self.generate / "done" / f"generate-{shard:05d}.json").exists()

    def _watch(self) -> None:
        while not self._halt.wait(0.01):
            if (self.generate / "complete.json").exists():
                self.error = "generate completed before a node could be killed in it"
                return
            done = done_count(self.generate, "generate")
            if not done:
                continue
            running = {pid: shard for shard, pid in _started(self.run_dir)}  # each worker's latest
            for node in list(self.cluster.worker_nodes):
                procs = _node_processes(node)
                shards = sorted(running[p.pid] for p in procs if p.pid in running)
                # mid-shard: some of its three batches committed, not all
                if any(0 < self._parts(i) < 3 and not self._done(i) for i in shards):
                    self._kill(node, procs, done, shards)
                    return

    def _parts(self, shard: int) -> int:
        return len(list((self.generate / "parts" / f"generate-{shard:05d}").glob("*.rows.parquet")))

    def _kill(self, node: Any, procs: list[Any], done: int, shards: list[int]) -> None:
        import psutil

        self.cluster.remove_node(node, allow_graceful=False)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        self.done_at_kill = done
        self.killed_pids = {p.pid for p in procs}
        # a shard that committed between the look and the kill was not lost
        self.lost = [i for i in shards if not self._done(i)]
        self.parts = {i: self._parts(i) for i in self.lost}

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _two_workers(cluster: Any) -> None:
    """Back to two worker nodes after a test removed one (Ray starts nodes from the main thread only)."""
    while len(cluster.worker_nodes) < 2:
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)


def _status(run: Path) -> dict[str, Any]:
    return {name: {**f, "extra": None} for name, f in pipeline.status(run)["stages"].items()}


def test_node_lost_mid_generate_reruns_its_shard_elsewhere(cluster, recipe, reference, tmp_path):
    _two_workers(cluster)
    run = tmp_path / "run"
    config = load_config(recipe)
    pipeline.run(run, config, stages=["ingest", "curate"], executor="ray", progress=False)
    killer = NodeKiller(cluster, run)
    killer.start()
    try:
        run_stage(TracedGenerate(run, config), RayExecutor(config=config.ray, progress=False))
    finally:
        killer.stop()
    pipeline.run(run, config, stages=["score", "select", "export"], executor="ray", progress=False)
    assert killer.error is None, killer.error
    assert 1 <= killer.done_at_kill < GENERATE_TASKS
    assert len(killer.lost) == 1  # one one-CPU actor per node: one shard in flight there
    assert all(n >= 1 for n in killer.parts.values())  # the rerun elsewhere resumes after them
    print(
        f"node removed after {killer.done_at_kill} generate shards; lost and rerun elsewhere: {killer.lost} "
        f"(batches committed before the loss: {killer.parts})"
    )
    starts = _started(run)
    for i in killer.lost:
        pids = [pid for shard, pid in starts if shard == i]
        assert len(pids) == 2 and pids[0] in killer.killed_pids and pids[1] not in killer.killed_pids
        for rel in (f"generate/images/part-{i:05d}.tar", f"generate/data/part-{i:05d}.parquet"):
            assert (run / rel).read_bytes() == (reference / rel).read_bytes(), rel
    assert sorted(shard for shard, _ in starts) == sorted([*range(GENERATE_TASKS), *killer.lost])
    assert not tmp_exists(run)
    expected = tree_digest(reference, skip=SKIP)
    assert tree_digest(run, skip=SKIP) == expected
    assert sum(k.startswith("generate/images/") for k in expected) == GENERATE_TASKS
    assert _status(run) == _status(reference)
    assert sorted(p.name for p in run.glob("*/done/*.json")) == sorted(
        p.name for p in reference.glob("*/done/*.json")
    )
    assert len(cluster.worker_nodes) == 1
    assert cluster.memory.peak < MEMORY_LIMIT


def test_driver_killed_mid_generate_resumes_to_identical_bytes(cluster, recipe, reference, tmp_path):
    _two_workers(cluster)
    run = tmp_path / "run"
    generate = run / "generate"
    at_kill: list[int] = []

    def half_done() -> bool:
        time.sleep(0.02)
        done = done_count(generate, "generate")
        if done >= GENERATE_TASKS // 2:
            at_kill.append(done)
            return True
        return False

    args = ["run", str(recipe), "--run", str(run), "--executor", "ray", "-q"]
    kill_when(args, half_done, timeout=600)
    assert GENERATE_TASKS // 2 <= at_kill[0] < GENERATE_TASKS
    assert not (generate / "complete.json").exists()
    committed = {p.name for p in (generate / "done").glob("generate-*.json")}
    print(f"driver killed after {at_kill[0]} generate shards; rerun: {GENERATE_TASKS - len(committed)}")

    result = cli_process(*args)
    assert result.returncode == 0, result.stderr
    assert not tmp_exists(run)
    assert tree_digest(run, skip=SKIP) == tree_digest(reference, skip=SKIP)
    assert _status(run) == _status(reference)
    assert sorted(p.name for p in run.glob("*/done/*.json")) == sorted(
        p.name for p in reference.glob("*/done/*.json")
    )
    assert cluster.memory.peak < MEMORY_LIMIT
