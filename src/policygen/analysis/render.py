"""Offscreen videos of policies: GIF (Pillow) or MP4 (imageio-ffmpeg), the return so far drawn on each frame.

MuJoCo tasks are drawn by ``mujoco.Renderer`` on EGL (``MUJOCO_GL=egl``, the default here) or OSMesa
(``MUJOCO_GL=osmesa``), with the env's own camera settings, and without shadows, reflections and the
skybox: with Mesa's software rasteriser those cost ~10x the rest of a frame (Hopper, 240x240: 0.16 s
against 0.016 s a frame on this machine). Other tasks use the env's ``render()``. Several policies
(``--commands A,B,C``) play the same seeds and are put side by side, each panel frozen on its last frame
once its episodes are over. Every frame is kept: a video has ``sum(lengths + 1)`` frames per panel (the
reset state, then one per step), the longest panel deciding.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from policygen.errors import PolicygenError

VIDEO_SUFFIXES = (".gif", ".mp4")
GL_HINT = ("offscreen rendering needs EGL or OSMesa: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri "
           "(MUJOCO_GL=egl, the default) or apt-get install libosmesa6 and set MUJOCO_GL=osmesa")


def _set_gl() -> None:
    """MuJoCo picks its GL platform when first imported: EGL unless the user chose (MUJOCO_GL)."""
    if "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
            os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


_set_gl()  # importing this module before anything imports mujoco is enough


class MujocoFrames:
    """``frames(env) -> (H, W, 3) uint8`` for a Gymnasium MuJoCo env, fast settings (see the module doc)."""

    def __init__(self, env, width: int, height: int):
        import mujoco

        base = env.unwrapped
        self.model, self.data = base.model, base.data
        try:
            self.renderer = mujoco.Renderer(self.model, height, width)
        except Exception as e:  # mujoco raises its own FatalError or a GL library error
            gl = os.environ.get("MUJOCO_GL")
            hint = GL_HINT if gl else f"MUJOCO_GL was not set when mujoco was imported; {GL_HINT}"
            raise PolicygenError(f"{hint} ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from None
        for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
            self.renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        self.cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.model, self.cam)
        cfg = getattr(getattr(base, "mujoco_renderer", None), "default_cam_config", None) or {}
        for key, value in cfg.items():
            if isinstance(value, np.ndarray | list | tuple):
                getattr(self.cam, key)[:] = value
            else:
                setattr(self.cam, key, value)
        if "trackbodyid" in cfg:  # follow the body (a hopper leaves a fixed view within a few hundred steps)
            self.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING

    def __call__(self, env) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.cam)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


def _is_mujoco(env) -> bool:
    return hasattr(env.unwrapped, "model") and type(env.unwrapped.model).__module__.startswith("mujoco")


def record(act: Callable, env_id: str, episodes: int, seed: int, env_kwargs: dict | None, size: tuple[int, int],
           max_steps: int | None) -> tuple[list[np.ndarray], list[float], list[int]]:
    """Frames of ``episodes`` episodes, the return so far at each frame, and the episode lengths."""
    from policygen.analysis.play import play_frames

    _set_gl()
    frames, rets, lengths = [], [], []
    for ep_frames, ep_rets, length in play_frames(act, env_id, episodes, seed, env_kwargs, size, max_steps,
                                                  MujocoFrames, _is_mujoco):
        frames += ep_frames
        rets += ep_rets
        lengths.append(length)
    return frames, rets, lengths


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def annotate(frame: np.ndarray, lines: Sequence[str]):
    """The frame as a PIL image with ``lines`` drawn top left on a dark band."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    font = _font(max(10, img.height // 18))
    y = 3
    for text in lines:
        box = draw.textbbox((4, y), text, font=font)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((4, y), text, fill=(255, 255, 255), font=font)
        y = box[3] + 3
    return img


def compose(panels: list[dict]) -> list:
    """Side-by-side PIL frames of several recorded panels (``frames``, ``returns``, ``label``)."""
    from PIL import Image

    n = max(len(p["frames"]) for p in panels)
    out = []
    for t in range(n):
        imgs = []
        for p in panels:
            i = min(t, len(p["frames"]) - 1)
            done = " (done)" if t >= len(p["frames"]) else ""
            imgs.append(annotate(p["frames"][i], [*([p["label"]] if p["label"] else []),
                                                  f"return {p['returns'][i]:.1f}{done}"]))
        if len(imgs) == 1:
            out.append(imgs[0])
            continue
        canvas = Image.new("RGB", (sum(im.width for im in imgs), max(im.height for im in imgs)))
        x = 0
        for im in imgs:
            canvas.paste(im, (x, 0))
            x += im.width
        out.append(canvas)
    return out


def write_video(frames: list, path: Path, fps: float) -> None:
    """GIF through Pillow or MP4 through imageio-ffmpeg, written atomically."""
    from policygen.runs.files import atomic_write_bytes

    if path.suffix.lower() == ".gif":
        pal = _palette(frames)
        from PIL import Image

        quantized = [im.quantize(palette=pal, dither=Image.Dither.NONE) for im in frames]
        buf = io.BytesIO()
        quantized[0].save(buf, format="GIF", save_all=True, append_images=quantized[1:], loop=0,
                          duration=max(20, int(round(1000 / fps))), optimize=False)
        atomic_write_bytes(path, buf.getvalue())
        return
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise PolicygenError("writing .mp4 needs imageio and imageio-ffmpeg: pip install 'policygen[render]'") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    try:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=2,
                                ffmpeg_log_level="error") as w:
            for im in frames:
                w.append_data(_even(np.asarray(im)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _palette(frames: list):
    """One 256-colour palette for the whole video, from 8 frames spread over it (median cut).

    Quantizing every frame to one palette is ~10x faster than Pillow's per-frame median cut
    (1000 frames: ~2 s against ~20 s) and keeps colours from flickering between frames.
    """
    from PIL import Image

    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).round().astype(int)]
    strip = Image.new("RGB", (picks[0].width, sum(p.height for p in picks)))
    y = 0
    for p in picks:
        strip.paste(p, (0, y))
        y += p.height
    return strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def _even(a: np.ndarray) -> np.ndarray:
    return a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]


def render_policies(policies: list[tuple[str, Callable]], env_id: str, out: Path, episodes: int = 1, seed: int = 0,
                    env_kwargs: dict | None = None, size: tuple[int, int] = (320, 240), fps: float = 30,
                    max_steps: int | None = None) -> dict:
    """Render each ``(label, policy)`` for ``episodes`` episodes (same seeds), side by side, to ``out``."""
    panels, info = [], []
    for label, act in policies:
        frames, rets, lengths = record(act, env_id, episodes, seed, env_kwargs, size, max_steps)
        ep_returns = [rets[sum(n + 1 for n in lengths[:k + 1]) - 1] for k in range(len(lengths))]
        panels.append({"frames": frames, "returns": rets, "label": label})
        info.append({"label": label, "returns": ep_returns, "lengths": lengths})
    video = compose(panels)
    write_video(video, out, fps)
    return {"out": str(out), "env_id": env_id, "frames": len(video), "fps": fps, "episodes": episodes,
            "seed": seed, "size": [video[0].width, video[0].height], "panels": info}


def policies_to_render(target: str | Path, commands: str | None, env_id: str | None):
    """``([(label, policy)], env_id, env_kwargs)`` for a policy file or a run directory (``--commands A,B,C``)."""
    target = Path(target)
    if not target.exists():
        raise PolicygenError(f"{target}: no such run directory or policy file")
    if target.is_dir():
        from policygen.algorithms.loading import load_run

        loaded = load_run(str(target))
        if commands:
            values = _parse_list(commands)
            pols = [(f"command {c:g}", loaded.policy(c)) for c in values]
        else:
            pols = [("", loaded.policy())]
        rc = loaded.run_config
        env = env_id or rc.env_id
        return pols, env, rc.env_kwargs if env == rc.env_id else None
    if commands:
        raise PolicygenError("--commands needs a run directory of a generator; a policy file has one policy")
    from policygen.analysis.evaluate import check_fits, load_policy_file

    policy = load_policy_file(target)
    env = env_id or policy.meta.get("env_id")
    if not env:
        raise PolicygenError(f"{target} does not name its environment; pass --env ENV_ID")
    check_fits(policy, env)
    command = policy.meta.get("command")
    label = f"command {command:g}" if isinstance(command, int | float) else ""
    return [(label, policy)], env, policy.meta.get("env_kwargs") if env == policy.meta.get("env_id") else None


def _parse_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PolicygenError(f"--commands takes numbers separated by commas (e.g. 100,500,900), got {text!r}"
                             ) from None
    if not values:
        raise PolicygenError(f"--commands takes numbers separated by commas (e.g. 100,500,900), got {text!r}")
    return values


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PolicygenError(f"--size takes WIDTHxHEIGHT (e.g. 320x240), got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise PolicygenError(f"--size takes WIDTHxHEIGHT between 16 and 4096 pixels, got {text!r}")
    return w, h
