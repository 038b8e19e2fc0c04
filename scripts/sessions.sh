#!/usr/bin/env bash
# sessions.sh DB CORPUS [SEED...] - the dev corpus's venue session A and one
# more session per seed (11 and 12 unless given), each made once by
# make_queries.py into CORPUS/sessions: 20 minutes, 12 catalog tracks, DJ
# crossfades, speech, babble and reverb. Each is scanned and replayed with
# `earmark monitor --input`, and `earmark eval-session` judges both: a scan's
# boundaries within 2 s (issue 6), the monitor's within 3 s and the time it
# takes to name each track (issue 4). Ends with the totals over all sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 corpus=$(realpath "$2")
shift 2
seeds=("$@")
((${#seeds[@]})) || seeds=(11 12)
earmark=$PWD/target/release/earmark
make_queries=$PWD/../shared/corpus/make_queries.py
sessions=$corpus/sessions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
names=(session_A)
for seed in "${seeds[@]}"; do
    name=session_seed$seed
    names+=("$name")
    [ -f "$sessions/${name}_timeline.csv" ] && continue
    python3 "$make_queries" session --catalog "$corpus/catalog_A.csv" --ooc "$corpus/spare_A.csv" \
        --noise-dir "$corpus/noise/A" --seed "$seed" --out "$sessions/$name" >/dev/null
done
for name in "${names[@]}"; do
    wav=$sessions/$name.wav timeline=$sessions/${name}_timeline.csv
    echo "== $name"
    "$earmark" eval-session --db "$db" --timeline "$timeline" "$wav" | tee "$work/$name.scan" | tail -1
    "$earmark" monitor --plain --db "$db" --log "$work/$name.jsonl" --input "$wav" >/dev/null
    "$earmark" eval-session --log "$work/$name.jsonl" --timeline "$timeline" --tolerance-s 3 |
        tee "$work/$name.monitor" | tail -1
done
# Totals from the summary lines ("N of M catalog tracks found, K with both
# boundaries within T s; W wrong plays") and each play's "reported after D s".
total() {
    awk '/catalog tracks found/ {
            found += $1; tracks += $3; within += $7
            match($0, /; [0-9]+ wrong/); wrong += substr($0, RSTART + 2, RLENGTH - 8)
        }
        END { printf "%d of %d tracks found, %d within the tolerance, %d wrong plays", found, tracks, within, wrong }' "$@"
}
echo "== all sessions"
echo "scan:    $(total "$work"/*.scan)"
delays=$(grep -ho "reported after [0-9.]* s" "$work"/*.monitor | awk '{print $3}' | sort -n)
median=$(awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : "-"}' <<<"$delays")
echo "monitor: $(total "$work"/*.monitor); median $median s from a track's start to its play event"
