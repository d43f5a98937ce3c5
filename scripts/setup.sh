#!/usr/bin/env bash
# Create .venv and install policygen with what the main job and the tests need.
# PyTorch is pinned to 2.13.0 first: on the project's 2-core CPU machines that is a local CPU build;
# a looser spec would pull a multi-GB CUDA build. EnvPool (fast MuJoCo stepping), ONNX export, TensorBoard
# logging, rendering (imageio, ffmpeg), the SB3 baselines (stable-baselines3, sb3-contrib) and diffusers
# (Make-An-Agent's DDIM scheduler) are installed too. MetaWorld is not: metaworld 3.1 pins mujoco==3.3.0
# and fails under the mujoco 4.0 installed here (docs/make_an_agent.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.0'))" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0"
fi
# mujoco pinned to the version the README's figures were last measured with: a new MuJoCo can move the physics,
# and with it every return (gymnasium[mujoco] alone would take the newest).
"${PIP[@]}" -e ".[envpool,ray,sb3,export,tensorboard,render,diffusion,dev]" "mujoco==4.0.1"
# policygen render draws MuJoCo offscreen through EGL (Mesa's software renderer on a machine without a GPU)
EGL_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri"
if ! { ldconfig -p | grep -q 'libEGL.so.1' && ldconfig -p | grep -q 'libEGL_mesa.so.0'; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing EGL for offscreen rendering: $EGL_PKGS" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $EGL_PKGS >/dev/null
  else
    echo "policygen render needs EGL: sudo apt-get install $EGL_PKGS (or OSMesa: libosmesa6, MUJOCO_GL=osmesa)" >&2
  fi
fi
echo "policygen installed in .venv ($(.venv/bin/python -c 'import policygen; print(policygen.__version__)'))" >&2
