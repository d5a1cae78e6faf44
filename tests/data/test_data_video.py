"""Frame geometry and visual inputs against transformers' own Qwen2-VL image processor.

transformers' torchvision-backed processors (the fast image processor, the video processor) need
torchvision, which this project does not install; the PIL-backed Qwen2VLImageProcessorPil is the
one Qwen2.5-VL loads without it, and the one we match value for value. The video layout is
checked against an independent loop-by-loop construction instead.
"""
import av
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from visd_core.data.resize import box_to_pixels, resized_size, smart_resize, tokens_per_frame
from visd_core.data.video import (IMAGE_MEAN, IMAGE_STD, frames_to_image_inputs, frames_to_video_inputs,
                                  read_video, sample_frame_indices)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 4000), w=st.integers(1, 4000),
       budget=st.sampled_from([(3136, 401_408), (3136, 9408), (3136, 1_003_520), (100_352, 401_408)]))
def test_smart_resize_matches_transformers(h, w, budget):
    if max(h, w) / min(h, w) > 200:
        with pytest.raises(ValueError):
            hf_smart_resize(h, w, 28, *budget)
        with pytest.raises(ValueError):
            smart_resize(h, w, 28, *budget)
        return
    assert smart_resize(h, w, 28, *budget) == hf_smart_resize(h, w, 28, *budget)


def test_frame_geometry_of_the_defaults():
    assert resized_size(160, 120, 3136, 9408) == (112, 84)
    assert tokens_per_frame(160, 120, 3136, 9408) == 12                    # 8x6 patches / 4
    # 401,408 budget: beta = sqrt(1280 * 720 / 401408) = 1.515; floor(1280 / beta / 28) = 30,
    # floor(720 / beta / 28) = 16 -> 840 x 448 = 60 x 32 patches -> 480 tokens
    assert resized_size(1280, 720) == (840, 448)
    assert tokens_per_frame(1280, 720) == 480


@pytest.mark.parametrize("size,budget", [((123, 211), (3136, 401_408)), ((120, 160), (3136, 9408)),
                                         ((37, 300), (3136, 401_408)), ((720, 1280), (3136, 100_352))])
def test_image_inputs_equal_transformers(size, budget):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, *size, 3), dtype=np.uint8)
    frames[1] = np.linspace(0, 255, size[1], dtype=np.uint8)[None, :, None]   # smooth content too
    ref = Qwen2VLImageProcessorPil(min_pixels=budget[0], max_pixels=budget[1])(list(frames), return_tensors="np")
    mine = frames_to_image_inputs(frames, *budget)
    assert mine.pixel_values.shape == ref["pixel_values"].shape
    assert np.array_equal(mine.grid_thw.numpy(), ref["image_grid_thw"])
    assert np.abs(mine.pixel_values.numpy() - ref["pixel_values"]).max() <= 1e-5
    gh, gw = ref["image_grid_thw"][0, 1:]
    assert mine.tokens_per_item() == [gh * gw // 4] * 3
    assert set(mine.model_kwargs()) == {"pixel_values", "image_grid_thw"}


def expected_video_patches(x_TCHW):
    """Patch rows built one by one from the layout's definition: temporal pairs, then 2x2 merge
    blocks in raster order, then the 4 patches of a block in raster order; each row is
    (channel, frame of the pair, 14 rows, 14 cols)."""
    if len(x_TCHW) % 2:
        x_TCHW = np.concatenate([x_TCHW, x_TCHW[-1:]])
    T, C, H, W = x_TCHW.shape
    rows = []
    for t in range(T // 2):
        for bh in range(H // 28):
            for bw in range(W // 28):
                for mh in range(2):
                    for mw in range(2):
                        y, x = (2 * bh + mh) * 14, (2 * bw + mw) * 14
                        rows.append(x_TCHW[2 * t:2 * t + 2, :, y:y + 14, x:x + 14].transpose(1, 0, 2, 3).ravel())
    return np.stack(rows)


def test_video_inputs_layout():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 56, 84, 3), dtype=np.uint8)       # already multiples of 28
    vis = frames_to_video_inputs(frames, times=[0.0, 0.5, 1.0])
    x = ((frames.astype(np.float64) / 255).astype(np.float32) - IMAGE_MEAN) / IMAGE_STD
    expected = expected_video_patches(x.transpose(0, 3, 1, 2))
    assert vis.grid_thw.tolist() == [[2, 4, 6]]                         # 3 frames -> 2 temporal patches
    assert np.abs(vis.pixel_values.numpy() - expected).max() <= 1e-6
    assert vis.tokens_per_item() == [2 * 4 * 6 // 4]
    assert vis.model_kwargs()["second_per_grid_ts"].tolist() == [1.0]   # 2 frames, 0.5 s apart
    one = frames_to_image_inputs(frames[:1])                            # an image = a 1-frame clip
    assert np.array_equal(one.pixel_values.numpy(), frames_to_video_inputs(frames[:1]).pixel_values.numpy())


@pytest.fixture(scope="module", params=["mp4", "mkv"])     # mkv headers carry no frame count
def counter_video(tmp_path_factory, request):
    """23 frames at 5 fps; frame i is uniformly gray level 10 * i."""
    path = str(tmp_path_factory.mktemp("video") / f"counter.{request.param}")
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(23):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    return path


def test_read_video_samples_frames_with_times(counter_video):
    clip = read_video(counter_video, num_frames=16)
    assert clip.indices == np.linspace(0, 22, 16).round().astype(int).tolist()
    assert clip.frames.shape == (16, 48, 64, 3)
    assert np.abs(clip.frames.mean(axis=(1, 2, 3)) - 10 * np.array(clip.indices)).max() <= 1.5
    assert clip.times == pytest.approx([i / 5 for i in clip.indices], abs=1e-6)
    assert (clip.fps, clip.total_frames, clip.duration) == (5.0, 23, pytest.approx(4.6))
    assert read_video(counter_video, num_frames=40).indices == list(range(23))   # never more than exist
    assert len(read_video(counter_video, num_frames=None, fps=2.0).indices) == 9  # 4.6 s * 2 fps
    assert len(read_video(counter_video, num_frames=None, fps=0.1, min_frames=4).indices) == 4


def test_sample_frame_indices_errors():
    with pytest.raises(ValueError, match="exactly one"):
        sample_frame_indices(10, 16, video_fps=5, fps=2)
    with pytest.raises(ValueError, match="no frames"):
        sample_frame_indices(0, 16)
    with pytest.raises(ValueError, match="video_fps"):
        sample_frame_indices(10, None, fps=2)
    assert sample_frame_indices(100, None, video_fps=10, fps=1, max_frames=6) == \
        np.linspace(0, 99, 6).round().astype(int).tolist()


def test_box_to_pixels():
    assert box_to_pixels([0.1, 0.2, 0.5, 1.0], 112, 84) == [11, 17, 56, 84]   # 11.2, 16.8, 56, 84
    assert box_to_pixels([0.125, 0.0, 0.375, 0.5], 4, 4) == [1, 0, 2, 2]     # halves round up
    with pytest.raises(ValueError, match="not normalized"):
        box_to_pixels([0.5, 0.2, 0.4, 0.3], 112, 84)


def _faststart_copy(src: str, dst: str) -> bytes:
    """`src` remuxed with its index (moov) first, as streaming files are: a cut-off copy still opens."""
    import av
    with av.open(src) as i, av.open(dst, "w", options={"movflags": "faststart"}) as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is not None:
                p.stream = out
                o.mux(p)
    return open(dst, "rb").read()


def test_a_video_cut_off_mid_stream_is_refused_not_shortened(tmp_path):
    """Cut after its first frames, a faststart mp4 still opens and decodes them, then ends: reading
    it as a shorter video would silently misplace every verified time; it must fail (SampleError)."""
    from visd_core.data.synthetic import generate
    generate(str(tmp_path / "d"), n=1, seed=0, n_val=0, workers=1, progress=False)
    src = next((tmp_path / "d" / "videos").glob("*.mp4"))
    data = _faststart_copy(str(src), str(tmp_path / "fs.mp4"))
    assert read_video(str(tmp_path / "fs.mp4"), 4).total_frames == 40      # whole: fine
    messages = []
    for frac in (0.3, 0.5, 0.7, 0.9):        # some cuts stop the decoder with an error, some just end it
        cut = tmp_path / f"cut{frac}.mp4"
        cut.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ValueError) as e:
            read_video(str(cut), 4)
        messages.append(str(e.value))
    assert any("of the 40 frames its header declares" in m for m in messages), messages
