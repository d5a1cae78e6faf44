"""Judges: structured feedback per rollout for the VISD teacher (visd §3.2, Appendix G).

    judge = build_judge(cfg.judge, cfg.dump_folder)   # [judge] kind = "rule" | "http"
    batch = judge.judge(requests)                     # one call per step, all rollouts
    batch.feedback, batch.metrics

CLI over a file of rollouts: `python -m visd_core.judge --config C.toml --in R.jsonl --out F.jsonl`.
"""
from __future__ import annotations

from pathlib import Path

from visd_core.config import Judge as JudgeConfig
from visd_core.judge.base import Judge, JudgeBatch, JudgeRequest
from visd_core.judge.cache import FeedbackCache
from visd_core.judge.fallback_monitor import FallbackMonitor
from visd_core.judge.http_judge import HTTPJudge
from visd_core.judge.rule import RuleJudge, rule_feedback

__all__ = ["Judge", "JudgeBatch", "JudgeRequest", "RuleJudge", "HTTPJudge", "FeedbackCache",
           "FallbackMonitor", "rule_feedback", "build_judge"]


def build_judge(cfg: JudgeConfig, dump_folder: str | Path) -> Judge:
    """The judge `[judge] kind` names; the HTTP judge caches under `cache_dir` (default
    <dump_folder>/judge_cache; `cache_max_mb = 0` turns the cache off)."""
    if cfg.kind == "rule":
        return RuleJudge()
    if cfg.kind == "http":
        cache = None
        if cfg.cache_max_mb > 0:
            cache = FeedbackCache(cfg.cache_dir or Path(dump_folder) / "judge_cache", cfg.cache_max_mb << 20)
        return HTTPJudge(cfg, cache=cache)
    raise ValueError(f"judge.kind = {cfg.kind!r} is not one of 'rule', 'http'")
