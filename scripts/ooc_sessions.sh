#!/usr/bin/env bash
# ooc_sessions.sh DB CORPUS [SEED...] - false plays on venue sessions of music
# the catalog does not hold. make_queries.py makes each session (seeds 21 to
# 24 unless given) as it makes the dev sessions (20 minutes, DJ crossfades,
# tempo changes, speech, babble and reverb), but of the corpus's spare
# tracks, which the dev catalog (catalog_A.csv) leaves out; they are kept in
# CORPUS/sessions. Each is scanned and replayed with `earmark monitor
# --input` at two frame phases (PHASES, in ms: 0 16). Every play either
# reports is a wrong one. Prints, per run and in total, the plays kept, the
# plays announced and then withdrawn (the monitor announces a sure score at
# once), and the segments logged as unidentified music.
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 corpus=$(realpath "$2")
shift 2
seeds=("$@")
((${#seeds[@]})) || seeds=(21 22 23 24)
earmark=$PWD/target/release/earmark
make_queries=$PWD/../shared/corpus/make_queries.py
sessions=$corpus/sessions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -ra phases <<<"${PHASES:-0 16}"
# kept withdrawn unidentified of a scan's plays file or a monitor's log.
count() {
    python3 - "$1" <<'PY'
import json, sys
path = sys.argv[1]
if path.endswith(".json"):
    with open(path) as f:
        out = json.load(f)
    print(len(out["plays"]), 0, len(out["unidentified"]))
else:
    with open(path) as f:
        events = [json.loads(line) for line in f]
    ended = [e for e in events if e["event"] == "play_ended"]
    withdrawn = sum(1 for e in ended if e.get("withdrawn"))
    unidentified = sum(1 for e in events if e["event"] == "unidentified")
    print(len(ended) - withdrawn, withdrawn, unidentified)
PY
}
totals() {
    awk -v what="$1" '{k += $1; w += $2; u += $3}
        END { printf "%s: %d plays kept, %d withdrawn, %d unidentified segments\n", what, k, w, u }'
}
for seed in "${seeds[@]}"; do
    name=ooc_seed$seed
    if [ ! -f "$sessions/$name.wav" ]; then
        python3 "$make_queries" session --catalog "$corpus/spare_A.csv" --ooc "$corpus/spare_A.csv" \
            --noise-dir "$corpus/noise/A" --seed "$seed" --out "$sessions/$name" >/dev/null
    fi
    for ms in "${phases[@]}"; do
        wav=$sessions/$name.wav run=$name.$ms
        if ((ms > 0)); then
            scripts/pad_wav.py "$wav" "$work/$run.wav" "$ms"
            wav=$work/$run.wav
        fi
        "$earmark" scan --db "$db" --out "$work/$run" "$wav" >/dev/null 2>&1 || true
        count "$(ls "$work/$run"/*.plays.json)" | tee -a "$work/scan" | sed "s/^/$run scan:    /"
        "$earmark" monitor --plain --db "$db" --log "$work/$run.jsonl" --input "$wav" >/dev/null
        count "$work/$run.jsonl" | tee -a "$work/monitor" | sed "s/^/$run monitor: /"
        rm -f "$work/$run.wav"
    done
done
echo "== all sessions and phases (kept, withdrawn, unidentified)"
totals scan <"$work/scan"
totals monitor <"$work/monitor"
