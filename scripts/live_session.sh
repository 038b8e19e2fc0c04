#!/usr/bin/env bash
# live_session.sh DB SESSION.wav TIMELINE.csv [WORKDIR] - the live monitor on a
# dev-corpus venue session: starts a private PulseAudio null sink
# (../shared/live), runs `earmark monitor` on the default input, plays the
# session into the sink in real time, then prints the monitor's CPU use and
# `earmark eval-session` of its log (boundaries by wall clock, and how long
# after each track's start its play was reported).
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 session=$2 timeline=$3 work=$(realpath -m "${4:-target/live-session}")
earmark=$PWD/target/release/earmark
live=$PWD/../shared/live
mkdir -p "$work"
log=$work/events.jsonl
rm -f "$log"
export AUDIO_DIR=$work/audio
eval "$("$live/start_audio.sh")"
trap '"$live/stop_audio.sh"' EXIT
duration=$(soxi -D "$session")
/usr/bin/time -f "%U %S %e" -o "$work/time" \
    "$earmark" monitor --plain --db "$db" --log "$log" \
    --duration "$(awk "BEGIN{print $duration + 20}")" >"$work/monitor.out" 2>"$work/monitor.err" &
monitor=$!
until grep -q run_started "$log" 2>/dev/null; do
    if ! kill -0 "$monitor" 2>/dev/null; then
        echo "earmark monitor stopped before listening:" >&2
        cat "$work/monitor.err" >&2
        exit 1
    fi
    sleep 0.1
done
played_at=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
paplay "$session"
wait "$monitor"
read -r user sys wall <"$work/time"
echo "monitor CPU: ${user} s user + ${sys} s system over ${wall} s = $(awk "BEGIN{printf \"%.2f\", 100 * ($user + $sys) / $wall}")% of one core"
"$earmark" eval-session --timeline "$timeline" --log "$log" --played-at "$played_at" --tolerance-s 3
