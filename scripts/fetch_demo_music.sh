#!/usr/bin/env bash
# fetch_demo_music.sh DIR - a small real-music catalog for the demo: the
# soundtrack of HyperRogue (Debian package hyperrogue-music, CC-BY-SA 3.0,
# by Shawn Parrotte, Will Savino and others; licence in
# DIR/extract/usr/share/doc/hyperrogue-music/copyright). Downloads the .deb
# with apt-get (no root needed) and unpacks it; idempotent.
set -euo pipefail
dir=${1:?usage: fetch_demo_music.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -d "$dir/extract/usr/share/hyperrogue/music" ]; then
    (cd "$dir" && apt-get download -q hyperrogue-music >/dev/null 2>&1) || {
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -q >/dev/null
        (cd "$dir" && apt-get download -q hyperrogue-music >/dev/null)
    }
    dpkg-deb -x "$dir"/hyperrogue-music_*.deb "$dir/extract"
    rm -f "$dir"/hyperrogue-music_*.deb
fi
echo "$dir/extract/usr/share/hyperrogue/music"
