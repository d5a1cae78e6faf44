"""The synthetic dataset's world: flat shapes that move, appear, disappear and push each other,
with exact per-frame ground truth.

A scene is 3-4 shapes on a dark background, 160x120 pixels at 5 fps for 4-8 s (20-40 frames).
Every shape has its own color, so a color threshold finds it in a decoded frame. Events:
- push: a shape slides into another, the two move on touching, then the pusher stops and the
  pushed shape slides on alone;
- move: a shape moves in a straight line between two rests;
- appear / disappear: a shape pops into or out of view.
A scene is accepted only when every event is crisp in pixels: shapes never overlap, the pushing
pair is 4-adjacent on exactly its contact frames and >= 3 px apart on all others, every other pair
keeps >= 3 background pixels between their boxes, and all shapes stay >= 2 px inside the frame.
So the ground truth can be re-derived from the decoded video, which tests/data/test_synthetic.py does.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

W, H = 160, 120     # original frame; resized for the model under the dataset's pixel budget
FPS = 5             # 0.2 s per frame: every frame time has one decimal
BACKGROUND = (28, 28, 28)
COLORS = {          # saturated and >= 80 apart in RGB, so thresholds never confuse two colors
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 100, 240), "yellow": (240, 220, 40),
    "purple": (160, 70, 230), "orange": (250, 140, 30), "cyan": (40, 210, 220), "white": (235, 235, 235),
}
KINDS = ("circle", "square", "triangle", "diamond")
EDGE = 2            # min distance of a shape's pixels from the frame border
GAP = 3             # min background pixels between the boxes of shapes that do not interact
MIN_EVENT_FRAMES = 6    # an event spans >= 6 frames, so 16 uniformly sampled frames see it twice


@lru_cache(maxsize=None)
def template(kind: str, r: int) -> tuple[np.ndarray, int, int]:
    """Boolean mask of a shape of half-size r, cropped to its pixels, and the (dx, dy) of the
    mask's top-left corner relative to the shape's center."""
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    if kind == "circle":
        m = x * x + y * y <= r * r + r          # + r: a rounder raster than the exact disk
    elif kind == "square":
        s = round(0.8 * r)                      # about the circle's area
        m = (abs(x) <= s) & (abs(y) <= s)
    elif kind == "triangle":
        m = 2 * abs(x) <= y + r                 # apex up, base at the bottom
    elif kind == "diamond":
        m = abs(x) + abs(y) <= r
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    ys, xs = np.nonzero(m)
    return m[ys.min():ys.max() + 1, xs.min():xs.max() + 1], int(xs.min()) - r, int(ys.min()) - r


@dataclass
class Shape:
    color: str
    kind: str
    r: int
    pos: np.ndarray         # [n, 2] int: (x, y) of the center per frame
    visible: np.ndarray     # [n] bool

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"

    def boxes(self) -> np.ndarray:
        """[n, 4] int (x1, y1, x2, y2), inclusive pixel bounds of the shape in each frame."""
        m, dx, dy = template(self.kind, self.r)
        x1, y1 = self.pos[:, 0] + dx, self.pos[:, 1] + dy
        return np.stack([x1, y1, x1 + m.shape[1] - 1, y1 + m.shape[0] - 1], axis=1)

    def norm_box(self, f: int) -> list[float]:
        """Normalized [x1, y1, x2, y2] of frame f: pixel edges / frame size, rounded to 5 decimals
        (the value stored in the dataset; the reasoning's pixel boxes are computed from it)."""
        x1, y1, x2, y2 = self.boxes()[f].tolist()
        return [round(x1 / W, 5), round(y1 / H, 5), round((x2 + 1) / W, 5), round((y2 + 1) / H, 5)]

    def visible_span(self) -> tuple[int, int]:
        f = np.nonzero(self.visible)[0]
        return int(f[0]), int(f[-1])

    def motion_span(self) -> tuple[int, int] | None:
        """(last frame at the start position, first frame at the end position), or None if still."""
        moved = np.nonzero((self.pos[1:] != self.pos[:-1]).any(axis=1))[0]
        return None if len(moved) == 0 else (int(moved[0]), int(moved[-1]) + 1)

    def direction(self) -> str | None:
        """Direction of the net displacement: left, right, up or down (motion is axis-aligned)."""
        d = self.pos[-1] - self.pos[0]
        if not d.any():
            return None
        if abs(d[0]) >= abs(d[1]):
            return "right" if d[0] > 0 else "left"
        return "down" if d[1] > 0 else "up"


@dataclass
class Push:
    pusher: int         # shape indices
    pushed: int
    start: int          # first and last frame on which the two touch
    end: int
    direction: str      # "left" or "right"


@dataclass
class Scene:
    n_frames: int
    shapes: list[Shape]
    push: Push | None

    def render(self) -> np.ndarray:
        """[n, H, W, 3] uint8 RGB frames."""
        background = np.full((H, W, 3), BACKGROUND, np.uint8)
        frames = np.repeat(background[None], self.n_frames, axis=0)    # 30x faster than filling [n,H,W,3]
        for s in self.shapes:
            m, dx, dy = template(s.kind, s.r)
            for f in np.nonzero(s.visible)[0]:
                x, y = s.pos[f, 0] + dx, s.pos[f, 1] + dy
                frames[f, y:y + m.shape[0], x:x + m.shape[1]][m] = COLORS[s.color]
        return frames


# ---------------------------------------------------------------------------------------------
# Geometry checks
# ---------------------------------------------------------------------------------------------

def _in_frame(boxes: np.ndarray) -> bool:
    return bool((boxes[:, :2] >= EDGE).all() and (boxes[:, 2] <= W - 1 - EDGE).all()
                and (boxes[:, 3] <= H - 1 - EDGE).all())


def _box_gap(a: Shape, b: Shape) -> np.ndarray:
    """[n] background pixels between the two boxes along the axis that separates them most."""
    ba, bb = a.boxes(), b.boxes()
    return np.maximum.reduce([bb[:, 0] - ba[:, 2], ba[:, 0] - bb[:, 2],
                              bb[:, 1] - ba[:, 3], ba[:, 1] - bb[:, 3]]) - 1


def _boxes_apart(a: Shape, b: Shape) -> bool:
    """At least GAP background pixels between the two boxes on every frame both are visible."""
    return bool(((_box_gap(a, b) >= GAP) | ~(a.visible & b.visible)).all())


def relation(a: Shape, b: Shape, f: int) -> str:
    """How the pixels of two shapes relate in frame f: "overlap", "touch" (4-adjacent),
    "near" (within 2 px) or "far"."""
    ma, dxa, dya = template(a.kind, a.r)
    mb, dxb, dyb = template(b.kind, b.r)
    ax, ay = a.pos[f, 0] + dxa, a.pos[f, 1] + dya
    bx, by = b.pos[f, 0] + dxb, b.pos[f, 1] + dyb
    x0, y0 = min(ax, bx) - 3, min(ay, by) - 3       # a local canvas with room to dilate
    w = max(ax + ma.shape[1], bx + mb.shape[1]) - x0 + 3
    h = max(ay + ma.shape[0], by + mb.shape[0]) - y0 + 3
    ca, cb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    ca[ay - y0:ay - y0 + ma.shape[0], ax - x0:ax - x0 + ma.shape[1]] = ma
    cb[by - y0:by - y0 + mb.shape[0], bx - x0:bx - x0 + mb.shape[1]] = mb
    if (ca & cb).any():
        return "overlap"
    if ((ca[:, :-1] & cb[:, 1:]).any() or (ca[:, 1:] & cb[:, :-1]).any()
            or (ca[:-1] & cb[1:]).any() or (ca[1:] & cb[:-1]).any()):
        return "touch"
    d = ca.copy()       # Chebyshev dilation by 2: a 5x5 max filter, separable into rows and columns
    for _ in range(2):
        d[:, 1:] |= d[:, :-1].copy()
        d[:, :-1] |= d[:, 1:].copy()
    for _ in range(2):
        d[1:] |= d[:-1].copy()
        d[:-1] |= d[1:].copy()
    return "near" if (d & cb).any() else "far"


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def _still(shape: Shape, rng, n: int) -> None:
    m, dx, dy = template(shape.kind, shape.r)
    x = int(rng.integers(EDGE - dx, W - EDGE - dx - m.shape[1] + 1))
    y = int(rng.integers(EDGE - dy, H - EDGE - dy - m.shape[0] + 1))
    shape.pos = np.tile([x, y], (n, 1))


def _mover(shape: Shape, rng, n: int) -> None:
    """Still, then a straight move of >= MIN_EVENT_FRAMES frames at 2-4 px/frame, then still."""
    _still(shape, rng, n)
    step = np.array([(1, 0), (-1, 0), (0, 1), (0, -1)][rng.integers(4)]) * int(rng.integers(2, 5))
    dur = int(rng.integers(MIN_EVENT_FRAMES - 1, max(MIN_EVENT_FRAMES, n // 2)))    # moving steps
    s = int(rng.integers(1, n - dur))       # starts from rest; ends by the last frame
    k = np.clip(np.arange(n) - s, 0, dur)[:, None]
    shape.pos = shape.pos + k * step


def _blinker(shape: Shape, rng, n: int) -> None:
    """Still; appears, disappears, or both, with >= MIN_EVENT_FRAMES frames in view and >= 3 out."""
    _still(shape, rng, n)
    mode = rng.integers(3)
    a = int(rng.integers(3, n - MIN_EVENT_FRAMES + 1)) if mode != 1 else 0
    lo = a + MIN_EVENT_FRAMES - 1
    d = int(rng.integers(lo, n - 3)) if mode != 0 and lo < n - 3 else n - 1
    shape.visible = np.zeros(n, bool)
    shape.visible[a:d + 1] = True


def _push(a: Shape, b: Shape, rng, n: int) -> Push | None:
    """Shape a approaches b along x, touches it, pushes it for >= MIN_EVENT_FRAMES frames, stops;
    b slides on and stops. Returns None when the drawn timing or geometry does not fit."""
    v = int(rng.integers(3, 6))                         # px/frame: >= 3 px between non-contact frames
    approach, push = int(rng.integers(3, 9)), int(rng.integers(MIN_EVENT_FRAMES - 1, 9))
    slide = int(rng.integers(2, 6))
    if 1 + approach + push + slide > n - 1:
        return None
    m0 = int(rng.integers(1, n - (approach + push + slide)))
    c0, c1 = m0 + approach, m0 + approach + push
    d = int(rng.choice([-1, 1]))
    dy = int(rng.integers(-2, 3))
    # contact offset: from boxes 2 px apart, slide a toward b one pixel at a time until they touch
    a.pos, b.pos = np.array([[0, dy]]), np.array([[0, 0]])
    (ax1, _, ax2, _), (bx1, _, bx2, _) = a.boxes()[0], b.boxes()[0]
    a.pos[0, 0] = bx1 - 3 - ax2 if d > 0 else bx2 + 3 - ax1
    while (rel := relation(a, b, 0)) != "touch":
        if rel == "overlap":
            return None
        a.pos = a.pos + [[d, 0]]
    ox = int(a.pos[0, 0])
    f = np.arange(n)
    xa = ox + d * v * (np.clip(f, m0, c1) - c0)             # rests, approaches, pushes, rests
    xb = d * v * (np.clip(f, c0, c1 + slide) - c0)          # rests, pushed, slides, rests
    a.pos = np.stack([xa, np.full(n, dy)], axis=1)
    b.pos = np.stack([xb, np.zeros(n, int)], axis=1)
    lo = np.minimum(a.boxes()[:, :2].min(0), b.boxes()[:, :2].min(0))     # place the pair in frame
    hi = np.maximum(a.boxes()[:, 2:].max(0), b.boxes()[:, 2:].max(0))
    if (hi - lo)[0] > W - 1 - 2 * EDGE or (hi - lo)[1] > H - 1 - 2 * EDGE:
        return None
    shift = np.array([rng.integers(EDGE - lo[0], W - EDGE - hi[0]), rng.integers(EDGE - lo[1], H - EDGE - hi[1])])
    a.pos, b.pos = a.pos + shift, b.pos + shift
    gap = _box_gap(a, b)
    for i in range(n):
        want = "touch" if c0 <= i <= c1 else "far"
        if not (want == "far" and gap[i] >= GAP) and relation(a, b, i) != want:   # boxes apart: far
            return None
    return Push(pusher=0, pushed=1, start=c0, end=c1, direction="right" if d > 0 else "left")


def _place(shape: Shape, role, rng, n: int, placed: list[Shape], tries: int = 50) -> bool:
    """Draw the shape's role (position, motion, visibility) until it is in frame and apart from
    every shape already placed."""
    for _ in range(tries):
        role(shape, rng, n)
        if _in_frame(shape.boxes()[shape.visible]) and all(_boxes_apart(shape, p) for p in placed):
            return True
    return False


def sample_scene(rng: np.random.Generator, max_tries: int = 100) -> Scene:
    """A random crisp scene (see the module docstring); deterministic for the generator's state.
    Shapes 0 and 1 are the pushing pair (or, without a push, a mover and a still shape), shape 2
    appears and/or disappears, an optional shape 3 moves or stays."""
    for _ in range(max_tries):
        n = int(rng.integers(4, 9)) * FPS
        k = int(rng.integers(3, 5))
        colors = rng.choice(list(COLORS), k, replace=False)
        shapes = [Shape(str(c), KINDS[rng.integers(len(KINDS))], int(rng.integers(7, 12)),
                        np.zeros((n, 2), int), np.ones(n, bool)) for c in colors]
        push = None
        if rng.random() < 0.75:
            for _ in range(20):
                if (push := _push(shapes[0], shapes[1], rng, n)) is not None:
                    break
            else:
                continue
            roles = [_blinker] + [_mover if rng.random() < 0.5 else _still] * (k - 3)
            placed = shapes[:2]
        else:
            roles = [_mover, _still, _blinker] + [_mover if rng.random() < 0.5 else _still] * (k - 3)
            placed = []
        todo = shapes[len(placed):]
        if all(_place(s, role, rng, n, placed + todo[:i]) for i, (s, role) in enumerate(zip(todo, roles))):
            return Scene(n, shapes, push)
    raise RuntimeError(f"no crisp scene in {max_tries} tries")
