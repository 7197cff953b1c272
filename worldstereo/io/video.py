"""mp4 video IO through imageio-ffmpeg (bundled ffmpeg, libx264)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_path


def check_video_writer(flag: str | None = None) -> None:
    """The mp4 writer's ffmpeg is there; InputError naming the fixes (`flag`: the option that skips
    the video) otherwise. For long jobs that write a video only after their work: a missing ffmpeg
    should stop them before it. (An IMAGEIO_FFMPEG_EXE naming a missing file is taken on trust.)"""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        skip = f", or pass {flag}" if flag else ""
        raise InputError(None, "no ffmpeg to write mp4 videos: pip install imageio-ffmpeg (it bundles one)"
                               + skip) from None


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 12) -> None:
    """Write RGB uint8 frames [H, W, 3] (grey [H, W] allowed) as H.264 mp4, atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    with atomic_path(path) as tmp:
        # even sizes for yuv420p; macro_block_size=1 keeps the frame size as given when it is even.
        # x264 preset veryfast: 2.3× faster than the default (medium) on 25 frames of 832×480 here,
        # PSNR 41.2 vs 41.4 dB and a smaller file (the lossless frames are the PNGs beside it)
        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                macro_block_size=2, ffmpeg_log_level="error",
                                ffmpeg_params=["-preset", "veryfast"]) as w:
            for f in frames:
                f = np.asarray(f)
                if f.ndim == 2:
                    f = np.repeat(f[..., None], 3, axis=2)
                h, w_ = f.shape[:2]
                w.append_data(np.ascontiguousarray(f[: h - h % 2, : w_ - w_ % 2]))


def read_video(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """All (or the first max_frames) RGB frames of a video file."""
    import imageio.v2 as imageio

    path = Path(path)
    if not path.exists():
        raise InputError(path, "video not found")
    frames = []
    try:
        with imageio.get_reader(path, format="FFMPEG") as r:
            for i, f in enumerate(r):
                if max_frames is not None and i >= max_frames:
                    break
                frames.append(np.asarray(f)[..., :3])
    except Exception as e:
        raise InputError(path, f"not a readable video ({e.__class__.__name__})")
    if not frames:
        raise InputError(path, "video has no frames")
    return frames
