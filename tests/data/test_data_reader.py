"""JsonlReader: bad lines are skipped, logged and counted; seeded order; equal shards; exact resume."""
import json
import logging
from collections import Counter

import pytest
from hypothesis import assume, given, settings, strategies as st

from visd_core.data.reader import JsonlReader
from visd_core.data.schema import RecordError, parse_record


def record(i, **over):
    rec = {"id": f"r{i}", "task": "visual_qa", "question": "Where is the red circle at 1.0s?",
           "answer": "red circle", "video_path": "videos/v.mp4", "key_frames": [{"time": 1.0, "idx": 0}],
           "key_items": {"0": {"red circle": [[0.1, 0.2, 0.3, 0.4]]}}, "image_size": [160, 120]}
    rec.update(over)
    return json.dumps(rec)


def write(tmp_path, lines, name="data.jsonl"):
    (tmp_path / "videos").mkdir(exist_ok=True)
    (tmp_path / "videos" / "v.mp4").write_bytes(b"")    # the reader only checks that the file exists
    path = tmp_path / name
    path.write_bytes(b"\n".join(ln if isinstance(ln, bytes) else ln.encode() for ln in lines) + b"\n")
    return str(path)


def test_bad_lines_are_skipped_logged_and_counted(tmp_path, caplog):
    lines = [
        record(0),
        '{"id": "r9", "task": ',                                                # 2: corrupt JSON
        record(1, video_path="videos/missing.mp4"),                             # 3: no such video
        record(2, key_items={"0": {"red circle": [[0.1, 0.2, 1.3, 0.4]]}}),     # 4: x2 > 1
        record(3, task="dance"),                                                # 5: unknown task
        b"\xff\xfe not utf-8",                                                  # 6: bad bytes
        record(0),                                                              # 7: id r0 again
        "",                                                                     # blank: ignored
        record(4, answer=""),                                                   # 9: fine for visual QA
        record(5, task="video_mcq", options=["A. x", "B. y"], answer="C"),      # 10: no option C
    ]
    with caplog.at_level(logging.WARNING, logger="visd_core.data.reader"):
        reader = JsonlReader(write(tmp_path, lines), shuffle=False)
    assert [r.id for r in reader] == ["r0", "r4"]          # reading went on past every bad line
    assert reader.skipped == Counter(bad_json=2, missing_video=1, box_out_of_range=1, unknown_task=1,
                                     duplicate_id=1, invalid=1)
    text = caplog.text
    for lineno, reason in [(2, "bad_json"), (3, "missing_video"), (4, "box_out_of_range"),
                           (5, "unknown_task"), (6, "bad_json"), (7, "duplicate_id"), (10, "invalid")]:
        assert f"data.jsonl:{lineno}: skipped ({reason})" in text
    assert "kept 2 records, skipped 7" in text


def test_only_rank_zero_logs(tmp_path, caplog):
    path = write(tmp_path, [record(0), "{", record(1)])
    with caplog.at_level(logging.WARNING, logger="visd_core.data.reader"):
        reader = JsonlReader(path, rank=1, world_size=2)
    assert reader.skipped == Counter(bad_json=1) and caplog.text == ""


def test_video_paths_resolve_against_root(tmp_path):
    path = write(tmp_path, [record(0)])
    assert next(iter(JsonlReader(path))).video_path == str(tmp_path / "videos" / "v.mp4")
    other = tmp_path / "elsewhere"
    (other / "videos").mkdir(parents=True)
    (other / "videos" / "v.mp4").write_bytes(b"")
    assert next(iter(JsonlReader(path, video_root=str(other)))).video_path == str(other / "videos" / "v.mp4")
    absolute = write(tmp_path, [record(0, video_path=str(other / "videos" / "v.mp4"))], "abs.jsonl")
    rec = next(iter(JsonlReader(absolute, video_root="/nonexistent")))
    assert rec.video_path == str(other / "videos" / "v.mp4")


def test_no_valid_record_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no valid records.*bad_json=1"):
        JsonlReader(write(tmp_path, ["not json"]))


def test_schema_errors_carry_their_kind():
    base = json.loads(record(0))
    with pytest.raises(RecordError) as e:
        parse_record({**base, "key_items": {"0": {"x": [[0, 0, 10**400, 1]]}}})     # no OverflowError
    assert e.value.kind == "invalid"
    with pytest.raises(RecordError, match="appears twice"):
        parse_record({**base, "key_frames": [{"time": 1.0, "idx": 0}, {"time": 2.0, "idx": 0}]})
    with pytest.raises(RecordError) as e:
        parse_record({**base, "task": "dance"})
    assert e.value.kind == "unknown_task"
    # record text that would turn into turn or vision tokens is rejected at load, not mid-epoch
    with pytest.raises(RecordError, match="special token <\\|image_pad\\|>"):
        parse_record({**base, "question": "what is <|image_pad|> here?"})


def order(reader, epochs=1):
    out = []
    for _ in range(epochs):
        out.append([r.id for r in reader])
    return out


def test_shuffle_is_seeded_per_epoch(tmp_path):
    path = write(tmp_path, [record(i) for i in range(20)])
    a, b = order(JsonlReader(path, seed=3), 3), order(JsonlReader(path, seed=3), 3)
    assert a == b                                               # same seed: same order every epoch
    assert a[0] != a[1] and a[1] != a[2]                        # a new permutation each epoch
    assert all(sorted(ep) == sorted(f"r{i}" for i in range(20)) for ep in a)
    assert order(JsonlReader(path, seed=4)) != a[:1]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 23), world=st.integers(1, 5), seed=st.integers(0, 3), epoch=st.integers(0, 2))
def test_shards_are_equal_and_cover_the_epoch(tmp_path_factory, n, world, seed, epoch):
    path = write(tmp_path_factory.mktemp("shard"), [record(i) for i in range(n)])
    shards = []
    for rank in range(world):
        reader = JsonlReader(path, rank=rank, world_size=world, seed=seed)
        reader.epoch = epoch
        shards.append([r.id for r in reader])
    assert {len(s) for s in shards} == {-(-n // world)}         # lockstep: same count on every rank
    seen = Counter(i for s in shards for i in s)
    assert set(seen) == {f"r{i}" for i in range(n)}             # nothing lost
    assert sum(seen.values()) - n == -n % world                 # only the wrap-around padding repeats
    if n % world == 0:
        assert all(c == 1 for c in seen.values())               # disjoint


def test_resume_gives_the_same_order(tmp_path):
    path = write(tmp_path, [record(i) for i in range(10)])
    a = JsonlReader(path, rank=1, world_size=2, seed=7)
    it = iter(a)
    head = [next(it).id for _ in range(3)]
    state = a.state_dict()
    rest = [r.id for r in it] + [r.id for r in a]       # rest of epoch 0, then all of epoch 1
    b = JsonlReader(path, rank=1, world_size=2, seed=7)
    b.load_state_dict(state)
    assert [r.id for r in b] + [r.id for r in b] == rest
    assert len(head) + len(rest) == 2 * len(a)


def test_resume_at_an_epoch_boundary(tmp_path):
    path = write(tmp_path, [record(i) for i in range(6)])
    a = JsonlReader(path, seed=1)
    it = iter(a)
    for _ in range(6):      # stop right after the last record, without exhausting the iterator
        next(it)
    state = a.state_dict()
    nxt = [r.id for r in a]
    b = JsonlReader(path, seed=1)
    b.load_state_dict(state)
    assert [r.id for r in b] == nxt and len(nxt) == 6 and b.epoch == a.epoch == 2   # both finished epoch 1


def test_resume_refuses_a_different_setup(tmp_path):
    path = write(tmp_path, [record(i) for i in range(6)])
    state = JsonlReader(path, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size was 2, now 3"):
        JsonlReader(path, world_size=3).load_state_dict(state)
    more = write(tmp_path, [record(i) for i in range(7)], "more.jsonl")
    with pytest.raises(ValueError, match="num_records was 6, now 7"):
        JsonlReader(more, world_size=2).load_state_dict(state)


def read_ranks(path, world, seed, states=None, counts=None):
    """One reader per rank of a `world`-rank run; resumed from `states` (any world size) when given.
    Each rank reads counts[rank] records (default: the rest of the epoch). Returns (ids, states)."""
    ids, out = [], []
    for rank in range(world):
        r = JsonlReader(path, rank=rank, world_size=world, seed=seed)
        if states is not None:
            r.load_state_dicts(states)
        if counts is None:
            got = [rec.id for rec in r]                 # the rest of the current epoch
        else:
            it = iter(r)
            got = [next(it).id for _ in range(counts[rank])]
        ids.append(got)
        out.append(r.state_dict())
    return ids, out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 17), old=st.integers(1, 4), new=st.integers(1, 4), seed=st.integers(0, 3),
       data=st.data())
def test_resume_on_another_world_size_reads_every_record_of_the_epoch_once(tmp_path_factory, n, old, new, seed,
                                                                             data):
    """A run on `old` ranks is checkpointed mid-epoch (ranks at different positions: skips make them
    differ) and resumed on `new` ranks: the rest of the epoch is exactly the records no old rank read."""
    assume(old != new)                                  # same size: each rank resumes its own position
    path = write(tmp_path_factory.mktemp("resize"), [record(i) for i in range(n)])
    per_rank = -(-n // old)
    counts = [data.draw(st.integers(0, per_rank - 1)) for _ in range(old)]
    before, states = read_ranks(path, old, seed, counts=counts)
    after, new_states = read_ranks(path, new, seed, states=states)
    seen = Counter(i for ranks in before + after for i in ranks)
    assert set(seen) == {f"r{i}" for i in range(n)}                   # nothing of the epoch lost
    left = n if n % old == 0 else per_rank * old                      # the old epoch incl. its padding
    remainder = left - sum(counts)
    assert sum(len(a) for a in after) == -(-remainder // new) * new   # dealt evenly over the new ranks
    assert sum(seen.values()) - n <= (-n % old) + (-remainder % new)  # only wrap-around padding repeats
    if n % old == 0 and remainder % new == 0:
        assert all(c == 1 for c in seen.values())
    assert {len(a) for a in after} == {-(-remainder // new)}          # lockstep on the new ranks
    # the next epoch is the plain seeded order of the new world size
    nxt = JsonlReader(path, rank=0, world_size=new, seed=seed)
    nxt.load_state_dict(new_states[0])
    fresh = JsonlReader(path, rank=0, world_size=new, seed=seed)
    fresh.epoch = 1
    assert [r.id for r in nxt] == [r.id for r in fresh]


def test_resize_twice_and_ranks_in_different_epochs(tmp_path):
    path = write(tmp_path, [record(i) for i in range(12)])
    before, states = read_ranks(path, 2, 5, counts=[2, 3])            # rank 1 skipped one more sample
    mid, states = read_ranks(path, 1, 5, states=states, counts=[4])   # 2 -> 1 ranks
    after, _ = read_ranks(path, 3, 5, states=states)                  # 1 -> 3 ranks
    seen = Counter(i for ranks in before + mid + after for i in ranks)
    assert seen == Counter(f"r{i}" for i in range(12))                # each once: 5 + 4 + 3 = 12
    # rank 1 already crossed into epoch 1 (it read its 6 and one more); rank 0 is at 5 of 6
    a = JsonlReader(path, rank=0, world_size=2, seed=5)
    b = JsonlReader(path, rank=1, world_size=2, seed=5)
    ia, ib = iter(a), iter(b)
    read = [next(ia).id for _ in range(5)] + [next(ib).id for _ in range(6)]
    next(iter(b))                                                     # the first record of epoch 1 (as the trainer asks)
    assert (a.epoch, a.position, b.epoch, b.position) == (0, 5, 1, 1)
    c = JsonlReader(path, rank=0, world_size=1, seed=5)
    c.load_state_dicts([a.state_dict(), b.state_dict()])
    rest = [r.id for r in c]                                          # the rest of epoch 0 only
    assert c.epoch == 1 and len(rest) == 1
    assert sorted(read + rest) == sorted(f"r{i}" for i in range(12))
