"""Watch the judge's fallback share across steps, so a judge that stopped judging is loud.

Every judge fault falls back to the rule judge and training goes on (judge/base.py); one step's
`judge/fallback_<cause>` counts sit in metrics.jsonl where nobody reads them. A misconfigured
judge (a reasoning model out of token budget, a rejected parameter) falls back on every sample of
every step, and the "LLM-judged" run silently becomes a rule-judged one. This keeps the counts of
the last `window_steps` judged steps and speaks up when the fallback share passes
`judge.max_fallback_frac`.
"""
from __future__ import annotations

from collections import Counter, deque

from visd_core.config import Judge as JudgeConfig

# What to change for each fallback cause (metrics `judge/fallback_<cause>`, http_judge.CAUSES).
_KNOBS = {
    "empty_content": "raise judge.max_tokens or lower judge.reasoning_effort",
    "bad_reply": "check that judge.model follows the JSON-only instruction",
    "timeout": "raise judge.timeout_s",
    "deadline": "raise judge.deadline_s or judge.concurrency",
    "http_429": "lower judge.concurrency or raise the endpoint's rate limit",
    "http_4xx": "check judge.model, judge.max_tokens_field, judge.reasoning_effort and the API key",
    "http_5xx": "check the endpoint's health",
    "connection": "check judge.base_url and that the endpoint is up",
    "error": "a bug in the HTTP judge client: see the log",
}


class FallbackMonitor:
    """Fallback share of the last `window_steps` judged steps against `judge.max_fallback_frac`.

    The trainer calls it once per step with the step's metrics after the cross-rank reduction
    (`all_reduce_mean`: a ratio of means is the ratio of sums), so that every rank decides alike —
    an abort on one rank alone would leave the others waiting in a collective:

        self.fallback_monitor = FallbackMonitor(cfg.judge)     # once, next to build_judge
        ...
        m.update(all_reduce_mean(summary, self.d))             # summary holds batch.metrics
        msg = self.fallback_monitor.observe(step, m)           # RuntimeError if on_fallback = "abort"
        if msg:
            log.warning(msg)

    It reads `judge/samples` (requests in the call, cache hits included), `judge/fallback` (samples
    given rule feedback) and `judge/fallback_<cause>`. A step without a judge call (λ = 0, or the
    rule judge, whose metrics have no `judge/fallback`) adds nothing. Above the threshold it warns
    once per crossing: after a warning it stays quiet until the share drops back to the threshold
    or below. With `on_fallback = "abort"` it raises instead, as soon as the share is above it.
    """

    def __init__(self, cfg: JudgeConfig, window_steps: int = 10):
        if window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {window_steps}")
        self.max_frac, self.on_fallback = cfg.max_fallback_frac, cfg.on_fallback
        self.window: deque[tuple[float, float, Counter]] = deque(maxlen=window_steps)   # (samples, fallback, causes)
        self.warned = False

    def observe(self, step: int, metrics: dict) -> str | None:
        """Add one step's judge metrics; the warning message when the share just crossed the threshold."""
        samples = float(metrics.get("judge/samples", 0))    # floats: per-rank means after the reduction
        if not samples or "judge/fallback" not in metrics:
            return None
        causes = Counter({k.removeprefix("judge/fallback_"): float(v) for k, v in metrics.items()
                          if k.startswith("judge/fallback_") and v})
        self.window.append((samples, float(metrics["judge/fallback"]), causes))
        total = sum(s for s, _, _ in self.window)
        fell = sum(f for _, f, _ in self.window)
        if fell <= self.max_frac * total:
            self.warned = False                  # re-armed: the next crossing warns again
            return None
        if self.warned and self.on_fallback == "warn":
            return None
        self.warned = True
        msg = self._message(step, fell, total)
        if self.on_fallback == "abort":
            raise RuntimeError(msg + ' (judge.on_fallback = "abort")')
        return msg

    def _message(self, step: int, fell: float, total: float) -> str:
        causes = sum((c for _, _, c in self.window), Counter()).most_common(3)
        top = ", ".join(f"{k} x{n:g}" for k, n in causes) or "unknown"
        knob = _KNOBS.get(causes[0][0], "see the judge log") if causes else "see the judge log"
        return (f"JUDGE FALLING BACK: {fell:g}/{total:g} samples ({fell / total:.0%}) of the last {len(self.window)} "
                f"judged steps (to step {step}) got rule-judge feedback instead of the LLM judge's, above "
                f"judge.max_fallback_frac = {self.max_frac:g}; top causes: {top}; {knob}")
