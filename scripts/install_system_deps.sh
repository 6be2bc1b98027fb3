#!/usr/bin/env bash
# Debian packages for MuJoCo offscreen rendering (EGL, with OSMesa as the fallback).
# Idempotent: installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
packages=(libegl1 libegl-mesa0 libgl1 libosmesa6)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
