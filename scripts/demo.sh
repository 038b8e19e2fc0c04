#!/usr/bin/env bash
# demo.sh [DIR] - the whole job on real music, from nothing: install what is
# missing, build, fetch a small freely licensed catalog, index all of it but
# one track, cut clips (with pink noise, played 4% fast, a semitone higher,
# and one of the left-out track) and identify them; then a short show of
# catalog tracks and the left-out one is scanned and judged against rights
# metadata and a blanket licence, into a cue sheet (CSV and HTML).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/demo}
scripts/setup.sh
cargo build --release --quiet
earmark=target/release/earmark
music=$(scripts/fetch_demo_music.sh "$work/music")
mapfile -t tracks < <(find "$music" -name '*.ogg' | sort)
# Left out of the catalog: a piece earmark's music detector hears as music
# (not all of this soundtrack's sparse pieces are), so the show below has
# unidentified music.
unknown=${tracks[4]}
catalog=()
for t in "${tracks[@]}"; do [ "$t" = "$unknown" ] || catalog+=("$t"); done
rm -rf "$work/db" "$work/clips" "$work/catalog"
mkdir -p "$work/catalog" "$work/clips"
for t in "${catalog[@]}"; do ln -sf "$t" "$work/catalog/"; done
echo "== indexing ${#tracks[@]} - 1 tracks"
"$earmark" index add --db "$work/db" "$work/catalog"
"$earmark" index compact --db "$work/db"
"$earmark" index info --db "$work/db"
echo "== cutting clips"
for i in 1 7 10 13; do
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

echo "== a show: four catalog tracks back to back (one 4% fast), then the left-out one"
show=$work/show
rm -rf "$show" && mkdir -p "$show"
for i in 3 6 9 12; do
    effect=""; [ "$i" = 9 ] && effect="tempo 1.04"
    sox "${tracks[$i]}" -c 1 -r 44100 "$show/part-$i.wav" trim 10 45 $effect 2>/dev/null
done
sox "$unknown" -c 1 -r 44100 "$show/part-99.wav" trim 10 40 2>/dev/null
sox "$show"/part-*.wav "$show/show.wav"
rm -f "$show"/part-*.wav
name() { basename "$1" .ogg; }
# Rights metadata: every track is managed but the 7th; a blanket licence for
# tonight excludes the 10th, and the show is taken to start at 21:00 local time.
{
    echo "id,title,artists,managed"
    for t in "${catalog[@]}"; do
        managed=yes; [ "$t" = "${tracks[6]}" ] && managed=no
        echo "$(name "$t"),$(name "$t"),HyperRogue soundtrack,$managed"
    done
} > "$show/rights.csv"
today=$(date +%F)
cat > "$show/licence.toml" <<TOML
id = "DEMO-BL"
kind = "blanket"
licensee = "Demo Fashion Week"
event = "demo-show"
venue = "Hall 1"
time_zone = "$(cat /etc/timezone 2>/dev/null || echo UTC)"
from = "${today}T20:00"
to = "${today}T23:00"
[exclude]
tracks = ["$(name "${tracks[9]}")"]
TOML
"$earmark" catalog import --db "$work/db" "$show/rights.csv"
"$earmark" licence add --replace --db "$work/db" "$show/licence.toml"
"$earmark" licence list --db "$work/db"
"$earmark" scan --db "$work/db" --event demo-show --out "$show/cues" "$show/show.wav"
plays=$(ls "$show"/cues/*.plays.json)
start=$(TZ=$(cat /etc/timezone 2>/dev/null || echo UTC) date -d "$today 21:00" --iso-8601=seconds)
"$earmark" report --scan "$plays" --db "$work/db" --event demo-show --recorded-at "$start" \
    --format html --out "$show/show.html"
echo "== the cue sheet (kind, start, end, track, coverage, reason, licence)"
"$earmark" report --scan "$plays" --db "$work/db" --event demo-show --recorded-at "$start" |
    cut -d, -f1,3,4,8,13,14,15 | column -t -s,
echo "== the whole cue sheet with its timeline: $show/show.html"
