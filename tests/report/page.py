"""Helpers of the report tests: read the token spans out of report.html, render it in Chromium,
and make hand-written run folders."""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
NO_CHROMIUM = "headless Chromium is absent (/usr/bin/chromium): `make browser` installs the Debian package"


class _Spans(HTMLParser):
    """Every <span class="t"> of the credit view, with its attributes, text and rollout card."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cards, self.spans, self._open = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article" and "rollout" in (a.get("class") or ""):
            self.cards.append({"step": int(a["data-step"]), "rank": int(a["data-rank"]),
                               "rollout": int(a["data-rollout"]), "spans": []})
        elif tag == "span" and a.get("class") == "t":
            self._open = {**a, "text": ""}
            self.cards[-1]["spans"].append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._open = None


def credit_cards(html: str) -> list[dict]:
    p = _Spans()
    p.feed(html)
    return p.cards


def rgba(style: str, var: str) -> tuple[int, int, int, float]:
    m = re.search(rf"--{var}:rgba\((\d+),(\d+),(\d+),([0-9.]+)\)", style)
    assert m, (var, style)
    return int(m[1]), int(m[2]), int(m[3]), float(m[4])


def render(html: Path, tmp: Path, height: int = 2000) -> tuple[str, Path]:
    """(the DOM after scripts ran, a screenshot) of `html` in headless Chromium, offline."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}"]
    url = html.resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-3000:]
    png = tmp / "shot.png"
    shot = subprocess.run(flags + [f"--screenshot={png}", f"--window-size=1280,{height}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-3000:]
    return dom.stdout, png


def body_attrs(dom: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", dom)[1]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def write_run(folder: Path, rows: list[dict], tail: str = "", config: str | None = "[algorithm]\nname = \"visd\"\n",
              credit: dict[int, list[dict]] | None = None) -> Path:
    """A run folder by hand: metrics.jsonl rows (+ `tail`, e.g. a cut-off line), config.toml, credit/."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    if config is not None:
        (folder / "config.toml").write_text(config)
    for step, recs in (credit or {}).items():
        (folder / "credit").mkdir(exist_ok=True)
        (folder / "credit" / f"step_{step:06d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return folder


def check_shading(html: str, records: list[dict]) -> int:
    """Every shown token span carries its record's m_t and Δ_t, and its m_t background is warm above 1,
    cool below, clear at 1, opacity |m_t − 1| / ε_w (x 0.8, the darkest shade). Returns tokens checked."""
    by_key = {(r["step"], r.get("rank", 0), r["rollout"]): r for r in records}
    checked = 0
    cards = credit_cards(html)
    assert cards, "no rollout cards in the report"
    for card in cards:
        rec = by_key[(card["step"], card["rank"], card["rollout"])]
        assert [s["text"] for s in card["spans"]] == rec["tokens"]
        for span, m, d in zip(card["spans"], rec["m"], rec["delta"], strict=True):
            assert float(span["data-m"]) == m and float(span["data-delta"]) == d
            r, _, b, a = rgba(span["style"], "m")
            assert abs(a - min(1.0, abs(m - 1) / rec["eps_w"]) * 0.8) < 1e-3, (m, a)
            if m > 1:
                assert r > b
            elif m < 1:
                assert b > r
            else:
                assert a == 0
            assert "m_t " in span["title"]
            checked += 1
    return checked
