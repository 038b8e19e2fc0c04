#!/usr/bin/env bash
# sessions.sh DB CORPUS [SEED...] - the dev corpus's venue session A and one
# more session per seed (11 and 12 unless given), each made once by
# make_queries.py into CORPUS/sessions: 20 minutes, 12 catalog tracks, DJ
# crossfades, speech, babble and reverb. Each is scanned and replayed with
# `earmark monitor --input`, and `earmark eval-session` judges both: a scan's
# boundaries within 2 s (issue 6), the monitor's within 3 s and the time it
# takes to name each track (issue 4), and how many plays the scan and the
# monitor put within 1 s of each other (issue 6). Ends with the totals over
# all sessions.
#
# Each session is also run after 8, 16 and 24 ms of silence (PHASES, in ms),
# which moves every STFT frame by a quarter of a hop: which peaks a frame
# grid catches changes, and so do the boundaries of the hardest tracks. A
# live monitor starts at a random phase; one phase alone flatters whatever
# was tuned on it.
#
# With SETS=dj, the sessions are DJ sets made by scripts/dj_mix.py instead
# (seeds 1-4 unless given; crowd noise at +5 dB under the even ones): each
# track at its own tempo in 0.94-1.06, crossfades of 8-16 s, no speech.
#
# EARMARK_BIN runs another build (default target/release/earmark): copy a
# build aside to compare it with the next on the same sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 corpus=$(realpath "$2")
shift 2
seeds=("$@")
earmark=${EARMARK_BIN:-$PWD/target/release/earmark}
make_queries=$PWD/../shared/corpus/make_queries.py
sessions=$corpus/sessions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${SETS:-venue}" = dj ]; then
    ((${#seeds[@]})) || seeds=(1 2 3 4)
    names=()
    for seed in "${seeds[@]}"; do
        name=dj_seed$seed
        names+=("$name")
        [ -f "$sessions/${name}_timeline.csv" ] && continue
        noise=()
        ((seed % 2)) || noise=(--noise "$corpus/noise/A/crowd.wav" --snr 5)
        scripts/dj_mix.py "$corpus/catalog_A.csv" "$sessions/$name" --seed "$seed" "${noise[@]}" >/dev/null
    done
else
    ((${#seeds[@]})) || seeds=(11 12)
    names=(session_A)
    for seed in "${seeds[@]}"; do
        name=session_seed$seed
        names+=("$name")
        [ -f "$sessions/${name}_timeline.csv" ] && continue
        python3 "$make_queries" session --catalog "$corpus/catalog_A.csv" --ooc "$corpus/spare_A.csv" \
            --noise-dir "$corpus/noise/A" --seed "$seed" --out "$sessions/$name" >/dev/null
    done
fi
read -ra phases <<<"${PHASES:-0 8 16 24}"
for name in "${names[@]}"; do
    for ms in "${phases[@]}"; do
        wav=$sessions/$name.wav timeline=$sessions/${name}_timeline.csv run=$name.$ms
        if ((ms > 0)); then
            scripts/pad_wav.py "$wav" "$work/$run.wav" "$ms"
            wav=$work/$run.wav
        fi
        echo "== $name, $ms ms later"
        "$earmark" monitor --plain --db "$db" --log "$work/$run.jsonl" --input "$wav" >/dev/null
        "$earmark" eval-session --db "$db" --timeline "$timeline" --against "$work/$run.jsonl" "$wav" |
            tee "$work/$run.scan" | tail -1
        "$earmark" eval-session --log "$work/$run.jsonl" --timeline "$timeline" --tolerance-s 3 |
            tee "$work/$run.monitor" | tail -1
        rm -f "$work/$run.wav"
    done
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
echo "== all sessions and phases"
echo "scan:    $(total "$work"/*.scan)"
delays=$(grep -ho "reported after [0-9.]* s" "$work"/*.monitor | awk '{print $3}' | sort -n)
median=$(awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : "-"}' <<<"$delays")
echo "monitor: $(total "$work"/*.monitor); median $median s from a track's start to its play event"
agree=$(grep -ho "agree within 1 s on [0-9]* of [0-9]*" "$work"/*.scan |
    awk '{n += $6; m += $8} END {printf "%d of %d", n, m}')
echo "scan and monitor agree within 1 s at both ends on $agree plays"
