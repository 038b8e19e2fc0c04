#!/usr/bin/env bash
# demo.sh [DIR] - the whole job on real music, from nothing: install what is
# missing, build, fetch a small freely licensed catalog, index all of it but
# one track, cut clips (with pink noise, played 4% fast, a semitone higher,
# and one of the left-out track) and identify them.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/demo}
scripts/setup.sh
cargo build --release --quiet
earmark=target/release/earmark
music=$(scripts/fetch_demo_music.sh "$work/music")
mapfile -t tracks < <(find "$music" -name '*.ogg' | sort)
unknown=${tracks[-1]}
rm -rf "$work/db" "$work/clips"
mkdir -p "$work/catalog" "$work/clips"
for t in "${tracks[@]:0:${#tracks[@]}-1}"; do ln -sf "$t" "$work/catalog/"; done
echo "== indexing ${#tracks[@]} - 1 tracks"
"$earmark" index add --db "$work/db" "$work/catalog"
"$earmark" index info --db "$work/db"
echo "== cutting clips"
for i in 1 4 7 10; do
    t=${tracks[$i]}
    sox "$t" -c 1 -r 44100 "$work/clips/clean.wav" trim 20 10 2>/dev/null
    sox -n -r 44100 -c 1 "$work/clips/noise.wav" synth 10 pinknoise vol 0.3 2>/dev/null
    name=$(basename "$t" .ogg)
    sox -m "$work/clips/clean.wav" "$work/clips/noise.wav" "$work/clips/$name-noisy.wav" 2>/dev/null
done
sox "${tracks[2]}" -c 1 "$work/clips/$(basename "${tracks[2]}" .ogg)-4pc-fast.wav" trim 30 10 tempo 1.04 2>/dev/null
sox "${tracks[5]}" -c 1 "$work/clips/$(basename "${tracks[5]}" .ogg)-semitone-up.wav" trim 40 10 pitch 100 2>/dev/null
sox "$unknown" -c 1 "$work/clips/not-in-catalog.wav" trim 15 10 2>/dev/null
rm -f "$work/clips/clean.wav" "$work/clips/noise.wav"
echo "== identifying (the clip's name says where it came from)"
"$earmark" identify --db "$work/db" "$work"/clips/*.wav || true
