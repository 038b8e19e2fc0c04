#!/usr/bin/env bash
# recurring_unknowns.sh DB CORPUS OUT - ten simulated event recordings where
# three out-of-catalog tracks recur at different tempos: each recording is
# 40 s of a catalog track, 45 s of one of three spare (out-of-catalog)
# HyperRogue tracks at a tempo of 0.92-1.08, and 40 s of another catalog
# track. Scans them into OUT/scan and groups their unidentified music with
# `earmark unknowns` (expected: three groups, of events 0 3 6 9, 1 4 7 and
# 2 5 8).
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 corpus=$(realpath "$2") out=$(realpath -m "$3")
earmark=$PWD/target/release/earmark
mkdir -p "$out"
mapfile -t tracks < <(awk -F, 'NR > 1 && $7 > 150 {print $6}' "$corpus/catalog_A.csv" | head -20)
music=$corpus/extract/hyperrogue-music/usr/share/hyperrogue/music
spare=("$music/hr3-graveyard.ogg" "$music/hr3-hell.ogg" "$music/hr3-laboratory.ogg")
tempos=(0.92 0.96 1.0 1.04 1.08 0.94 1.06 0.98 1.02 0.93)
for i in $(seq 0 9); do
    sox "${tracks[$((2 * i))]}" -r 44100 -c 2 "$out/a.wav" trim 60 40
    sox "${spare[$((i % 3))]}" -r 44100 -c 2 "$out/b.wav" trim 10 45 tempo "${tempos[$i]}"
    sox "${tracks[$((2 * i + 1))]}" -r 44100 -c 2 "$out/c.wav" trim 60 40
    sox "$out/a.wav" "$out/b.wav" "$out/c.wav" "$out/event$i.wav" 2>/dev/null
done
rm -f "$out"/[abc].wav
"$earmark" scan --db "$db" --out "$out/scan" "$out"/event*.wav
"$earmark" unknowns --db "$db" "$out"/scan/*.plays.json
