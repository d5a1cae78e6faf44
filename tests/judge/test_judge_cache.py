"""The on-disk feedback cache: keyed by (model, system, user), atomic, shared, bounded."""
import os
import threading
import time

import pytest

from visd_core.judge.cache import FeedbackCache, cache_key


def test_roundtrip_across_instances(tmp_path):
    k = cache_key("m", "sys", "usr")
    FeedbackCache(tmp_path, 1 << 20).put(k, "The answer is wrong.")
    assert FeedbackCache(tmp_path, 1 << 20).get(k) == "The answer is wrong."


def test_key_depends_on_model_and_both_prompts():
    keys = {cache_key("m", "s", "u"), cache_key("m2", "s", "u"), cache_key("m", "s2", "u"),
            cache_key("m", "s", "u2"), cache_key("m", "su", ""), cache_key("ms", "", "u")}
    assert len(keys) == 6


def test_size_is_bounded_and_recent_entries_survive(tmp_path):
    cache = FeedbackCache(tmp_path, 4000)
    keys = [cache_key("m", "s", str(i)) for i in range(60)]
    for i, k in enumerate(keys):
        cache.put(k, "x" * 100)
        past = time.time() - 1000 + i                              # strictly increasing ages
        os.utime(cache._path(k), (past, past))
    total = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert total <= 4000
    assert cache.get(keys[-1]) is not None and cache.get(keys[0]) is None


def test_torn_entry_is_a_miss_and_is_removed(tmp_path, caplog):
    cache = FeedbackCache(tmp_path, 1 << 20)
    k = cache_key("m", "s", "u")
    cache.put(k, "ok")
    cache._path(k).write_text('{"feedb')
    assert cache.get(k) is None
    assert not cache._path(k).exists()
    assert "unreadable judge cache entry" in caplog.text


def test_concurrent_writers_leave_whole_entries(tmp_path):
    caches = [FeedbackCache(tmp_path, 1 << 20) for _ in range(4)]    # as several ranks would
    k = cache_key("m", "s", "u")
    texts = [f"writer {i} " + "y" * 2000 for i in range(4)]

    def write(i):
        for _ in range(50):
            caches[i].put(k, texts[i])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        got = caches[0].get(k)
        assert got is None or got in texts
    for t in threads:
        t.join()
    assert caches[0].get(k) in texts
    assert not [f for f in tmp_path.rglob(".tmp-*")]                 # no temporary file left behind


def test_non_positive_bound_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        FeedbackCache(tmp_path, 0)
