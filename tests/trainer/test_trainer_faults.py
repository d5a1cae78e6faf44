"""Faults a long run meets, under real torchrun (gloo, CPU): a rank lost mid-run — torchrun
--max-restarts=1 restarts the job, which resumes by itself from its last complete checkpoint and ends
where the uninterrupted run ends —; two "nodes" (two launchers meeting over a TCP rendezvous on
loopback) training like one; and a resume on another world size (2 -> 1 -> 2 ranks) that still reads
every record of the epoch exactly once."""
import json
import math
import subprocess
from collections import Counter

from tests.trainer.launch import (ENV, ROOT, deterministic, final_params, free_port, overrides, rows, run, seen_ids,
                                  torchrun_cmd)


def test_a_lost_rank_restarts_resumes_by_itself_and_ends_like_the_straight_run(straight, data, tmp_path):
    dump = tmp_path / "restarted"
    # rank 1 dies (SIGKILL) while the step-4 checkpoint is written but not committed: the newest
    # complete checkpoint is step 2, and a half-written step_000004 is left behind
    env = {**ENV, "VISD_INJECT_KILL": "save:4:1"}
    out = run(overrides(data, dump), launcher=["--standalone", "--max-restarts=1"], env=env)
    assert "restart 1 of this job" in out                      # no --resume on the command line
    assert "step_000004, an incomplete save of an earlier attempt" in out     # found and removed
    assert "step_000002 at step 2" in out                      # resumed, not started over
    a, b = rows(straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert deterministic(b[step]) == deterministic(a[step]), step
    assert final_params(dump) == final_params(straight) == final_params(dump, rank=1)
    ck = dump / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_000002", "step_000004"]
    assert all((p / "COMMITTED").is_file() for p in ck.iterdir())


def test_two_nodes_train_like_one(straight, data, tmp_path):
    dump = tmp_path / "two_nodes"
    port = free_port()
    procs = [subprocess.Popen(torchrun_cmd(overrides(data, dump), nproc=1, launcher=[
        "--nnodes=2", f"--node_rank={node}", f"--rdzv-endpoint=127.0.0.1:{port}"]), cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    a, b = rows(straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4]
    for step in b:
        assert deterministic(b[step]) == deterministic(a[step]), step
    assert final_params(dump, 0) == final_params(dump, 1) == final_params(straight)


def test_resume_on_another_world_size_reads_every_record_of_the_epoch_once(data, tmp_path):
    """12 records, one per rank per SFT step: 2 ranks x 2 steps, then 1 rank x 4 steps, then 2 ranks
    x 2 steps read the epoch exactly once; DCP reshards model and optimizer each time."""
    dump = tmp_path / "resized"
    env = {**ENV, "VISD_TEST_SEEN_IDS": "1"}
    env.pop("VISD_INJECT_NONFINITE")
    base = [f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={dump}", "--data.num_frames=4",
            "--eval.every=0", "--training.stage=sft", "--training.batch_size=1", "--checkpoint.every=0", "--checkpoint.export=false"]
    run(base + ["--training.sft_steps=2"], nproc=2, env=env)
    run(base + ["--training.sft_steps=6", "--checkpoint.resume=auto"], nproc=1, env=env)     # 2 -> 1
    out = run(base + ["--training.sft_steps=8", "--checkpoint.resume=auto"], nproc=2, env=env)  # 1 -> 2
    assert "resuming a 1-rank position on 2 ranks: 4 records of epoch 0 left" in out
    ids = seen_ids(dump)
    train = [json.loads(line)["id"] for line in (data / "train.jsonl").read_text().splitlines()]
    assert Counter(ids) == Counter(train)                      # all 12, each exactly once
    m = rows(dump)
    assert sorted(m) == list(range(1, 9)) and all(math.isfinite(m[s]["sft/loss"]) for s in m)
