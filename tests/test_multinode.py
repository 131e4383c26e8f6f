"""Two "nodes" on one host: two torchrun launches (--nnodes 2, one gloo process each) sharing a c10d
rendezvous on 127.0.0.1 and one work dir (the shared file system). Both stages give the 1-process
result, also after one node is SIGKILLed mid-run and both are rerun, and a --max-restarts restart of
the whole group finishes the training."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from tests.test_distributed import CONFIG, REPO
from tests.test_train_engine import tiny_overrides, weights
from wsss.config import load_config
from wsss.pseudo import read_manifest
from wsss.pseudo.lock import LOCK_NAME
from wsss.runner import JOB_LOCK_NAME, gen_pseudo, take_over_job_lock
from wsss.train import build_model, train

TIMEOUT_S = 240  # per launch; a hang (a rendezvous that never completes) fails instead of blocking the suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One torchrun agent ("node") in its own session, logging to a file (a pipe could fill and block)."""

    def __init__(self, node_rank: int, port: int, run_id: str, tool: str, work_dir: Path, overrides: list[str],
                 extra: list[str], torchrun_extra: list[str], log: Path) -> None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node_rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", run_id, *torchrun_extra, str(REPO / "tools" / tool), str(CONFIG),
               "--work-dir", str(work_dir), *extra, "--set", *overrides]
        env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        self.log = log
        with open(log, "w") as f:
            self.proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def workers(self) -> list[int]:
        """PIDs of this agent's worker processes (its direct children; torchrun starts them in new sessions)."""
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def global_ranks(self) -> list[int]:
        ranks = []
        for pid in self.workers():
            try:  # a child may exit between listing and reading (a short-lived helper process)
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            except OSError:
                continue
            if b"RANK" in env:
                ranks.append(int(env[b"RANK"]))
        return ranks

    def kill(self) -> None:
        """The node is lost: its agent and its workers die at once (SIGKILL, no cleanup)."""
        pids = self.workers()
        os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"node timed out:\n{self.log.read_text()[-3000:]}") from None

    def tail(self) -> str:
        return self.text()[-3000:]

    def text(self) -> str:
        """The whole log: torchrun's failure dump can push the worker's own error line out of the tail."""
        return self.log.read_text()


def launch(tmp: Path, tool: str, work_dir: Path, overrides: list[str], extra: list[str] = (),
           torchrun_extra: list[str] = ()) -> list[Node]:
    port, run_id, tag = free_port(), uuid.uuid4().hex[:8], uuid.uuid4().hex[:6]
    return [Node(k, port, run_id, tool, work_dir, overrides, list(extra), list(torchrun_extra),
                 tmp / f"{tool}.{tag}.node{k}.log") for k in range(2)]


def run_ok(tmp: Path, tool: str, work_dir: Path, overrides: list[str], extra: list[str] = (),
           torchrun_extra: list[str] = ()) -> None:
    nodes = launch(tmp, tool, work_dir, overrides, extra, torchrun_extra)
    for node in nodes:
        assert node.wait() == 0, node.tail()


def wait_for(condition: Callable[[], bool], nodes: list[Node], what: str) -> None:
    """Poll (10 ms) until ``condition``; fail if a node exits first or it takes too long."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for node in nodes:
            assert node.proc.poll() is None, f"a node exited before {what}:\n{node.tail()}"
        time.sleep(0.01)


def node_with_rank(nodes: list[Node], rank: int) -> Node:
    # c10d ignores --node-rank and numbers the nodes itself: find the one that holds ``rank``
    wait_for(lambda: any(rank in n.global_ranks() for n in nodes), nodes, f"the worker of rank {rank}")
    return next(n for n in nodes if rank in n.global_ranks())


def stage_one_overrides(tmp: Path) -> list[str]:
    # the 1-process / 2-rank setup of tests/test_distributed.py: the ImageNet Lite0 stands in for a trained
    # classifier, so no classifier has to be trained first; 10 images, so a rank is killed mid-shard
    return [f"data.synthetic.root={tmp}/syn", "data.synthetic.num_train=10", "data.synthetic.size=48",
            "device=cpu", "labels.name=given", "classifier.name=imagenet_lite0",
            "classifier.imagenet_lite0.input_size=64", "pseudo.overlays=0",
            "classifier.imagenet_lite0.class_map={disc: [tench], block: [goldfish], triangle: [hammerhead], "
            "cross: [goldfinch]}"]


def lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def test_stage_one_two_nodes_killed_and_rerun_match_one_process(tmp_path: Path) -> None:
    overrides = stage_one_overrides(tmp_path)
    out_one, records_one = gen_pseudo(load_config(CONFIG, overrides), tmp_path / "one")
    out = tmp_path / "two/pseudo"
    nodes = launch(tmp_path, "gen_pseudo.py", tmp_path / "two", overrides)
    victim = node_with_rank(nodes, 1)
    part = out / "manifest.rank1.jsonl"
    wait_for(lambda: lines(part) >= 1, nodes, "rank 1's first label")  # a file, not a sleep
    victim.kill()
    written = lines(part)
    assert 1 <= written < 5, "rank 1 (5 images) was killed mid-shard"
    survivor = next(n for n in nodes if n is not victim)
    assert victim.wait() != 0 and survivor.wait() != 0, "the surviving node stops (its collective fails)"
    assert not (out / "manifest.jsonl").exists(), "nothing merged by the broken run"
    assert not (out / LOCK_NAME).exists(), "rank 0 (on the surviving node) released its lock at exit"

    run_ok(tmp_path, "gen_pseudo.py", tmp_path / "two", overrides)  # rerun both: stage one resumes by itself
    records = read_manifest(out / "manifest.jsonl")
    assert list(records) == list(records_one) and len(records) == 10, "every image exactly once"
    raw = [json.loads(line)["image"] for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert sorted(raw) == sorted(records_one), "no duplicate lines"
    assert not list(out.glob("manifest.rank*.jsonl")) and not (out / LOCK_NAME).exists()
    assert not (out / JOB_LOCK_NAME).exists()
    for image_id, rec in records_one.items():
        assert rec["status"] == "ok" == records[image_id]["status"]
        assert (out_one / rec["label"]).read_bytes() == (out / records[image_id]["label"]).read_bytes(), image_id


def train_overrides(tmp: Path, epochs: int) -> list[str]:
    # global batch 4 = 2 ranks x 2 images = 1 process x 2 images x 2 accumulation steps (as test_distributed)
    return tiny_overrides(tmp / "syn") + [f"train.epochs={epochs}", "train.val_interval=100", "train.batch_size=4",
                                          "train.micro_batch=2"]


def assert_same_params(cfg: object, a: Path, b: Path) -> None:
    # learned weights match; BatchNorm running stats are rank 0's own (DDP without SyncBN): not compared
    wa, wb = weights(a), weights(b)
    for name, _ in build_model(cfg, 5).named_parameters():
        torch.testing.assert_close(wa[name], wb[name], msg=name)


def epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def test_training_two_nodes_killed_and_resumed_match_one_process(tmp_path: Path) -> None:
    epochs = 3
    overrides = train_overrides(tmp_path, epochs)
    cfg = load_config(CONFIG, overrides)
    train(cfg, tmp_path / "one")
    last = tmp_path / "two/train/last.pth"
    nodes = launch(tmp_path, "train.py", tmp_path / "two", overrides)
    victim = node_with_rank(nodes, 1)
    wait_for(last.is_file, nodes, "the first checkpoint")
    victim.kill()
    assert epoch_of(last) < epochs - 1, "killed before the end"
    for node in nodes:
        assert node.wait() != 0
    run_ok(tmp_path, "train.py", tmp_path / "two", overrides, ["--resume"])
    assert epoch_of(last) == epochs - 1
    assert_same_params(cfg, tmp_path / "one/train/last.pth", last)
    log = json.loads((tmp_path / "two/train/log.json").read_text())
    assert [e["epoch"] for e in log] == list(range(1, epochs + 1)), "each epoch once"
    assert not list(last.parent.glob(".*.tmp*"))


def test_lock_of_an_earlier_attempt_of_the_same_job_is_taken_over(tmp_path: Path) -> None:
    # rank 0 of the dead attempt ran on another node: its lock cannot be checked there, but the job id says it
    out = tmp_path / "pseudo"
    out.mkdir()
    lock = json.dumps({"pid": 4242, "host": "node-that-died", "boot": None, "start": None, "since": "then"})
    (out / LOCK_NAME).write_text(lock)
    (out / JOB_LOCK_NAME).write_text(json.dumps({"job": "job-7", "lock": lock}))
    assert not take_over_job_lock(out, None), "no job id (plain torchrun --rdzv-id none): never"
    assert not take_over_job_lock(out, "job-8"), "another job's lock stays"
    (out / JOB_LOCK_NAME).write_text(json.dumps({"job": "job-7", "lock": lock.replace("4242", "4243")}))
    assert not take_over_job_lock(out, "job-7"), "the note names another lock: a newer run's, keep it"
    (out / JOB_LOCK_NAME).write_text(json.dumps({"job": "job-7", "lock": lock}))
    assert take_over_job_lock(out, "job-7")
    assert not (out / LOCK_NAME).exists() and not (out / JOB_LOCK_NAME).exists()


def test_foreign_lock_without_job_blocks_until_removed_by_hand(tmp_path: Path) -> None:
    # a lock a dead node of *another* job left: refused with its host named; deleting it lets the run go on
    overrides = stage_one_overrides(tmp_path) + ["data.synthetic.num_train=2"]
    out = tmp_path / "two/pseudo"
    out.mkdir(parents=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "node-that-died", "boot": None, "start": None,
                                             "since": "then"}))
    nodes = launch(tmp_path, "gen_pseudo.py", tmp_path / "two", overrides)
    for node in nodes:
        assert node.wait() != 0
    assert "node-that-died" in nodes[0].text() + nodes[1].text()
    (out / LOCK_NAME).unlink()
    run_ok(tmp_path, "gen_pseudo.py", tmp_path / "two", overrides, ["--no-eval"])
    assert len(read_manifest(out / "manifest.jsonl")) == 2
