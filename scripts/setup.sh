#!/usr/bin/env bash
# setup.sh - install what building and testing earmark needs on Debian, if
# it is missing: libopus (the Opus decoder), ALSA headers (sound card
# capture through cpal), pkg-config, sox (demo clips), PulseAudio (a null
# sink stands in for the venue's sound card in the live monitor's tests), and
# Chromium (the HTML cue sheet's test takes a screenshot with it), and
# nats-server (the cluster's tests start one with JetStream).
# Idempotent; uses sudo when not run as root.
set -euo pipefail
need=()
for pkg in libopus-dev libasound2-dev pkg-config sox libsox-fmt-all pulseaudio chromium fonts-dejavu-core nats-server; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing ${need[*]}" >&2
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
