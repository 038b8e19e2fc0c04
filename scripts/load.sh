#!/usr/bin/env bash
# load.sh DB GROUND_TRUTH.csv [RATE] [SECONDS] - load on `earmark serve` from a
# separate process: starts the server on DB, makes a lookup key, sends the
# 10 s clips the ground truth names to /v1/identify at RATE requests per
# second (default 200) for SECONDS (default 30) with benches/serve_load.rs,
# prints throughput, errors, latency percentiles and the server's CPU time a
# request, then revokes the key and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
db=$1 truth=$2 rate=${3:-200} seconds=${4:-30}
cargo build --release --quiet
cargo bench --bench serve_load --no-run --quiet 2>/dev/null
earmark=$PWD/target/release/earmark
key=$("$earmark" keys add --db "$db" --role lookup --name load.sh 2>/dev/null)
log=$(mktemp)
"$earmark" serve --db "$db" --listen 127.0.0.1:0 2>"$log" &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    "$earmark" keys revoke --db "$db" "$(echo "$key" | cut -d_ -f2)" >/dev/null
    rm -f "$log"
}
trap cleanup EXIT
until grep -q "listening on" "$log"; do sleep 0.1; done
url=$(sed -n 's/.*listening on //p' "$log")
# The server's CPU time (user + system, in clock ticks) from /proc.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(cpu_ticks)
EARMARK_URL=$url EARMARK_API_KEY=$key EARMARK_LOAD_CLIPS=$truth \
EARMARK_LOAD_RATE=$rate EARMARK_LOAD_SECONDS=$seconds \
    cargo bench --quiet --bench serve_load
awk -v t="$(( $(cpu_ticks) - before ))" -v hz="$(getconf CLK_TCK)" -v n="$(( rate * seconds ))" \
    'BEGIN { printf "server CPU %.1f s, %.2f ms a request\n", t / hz, 1000 * t / hz / n }'
curl -s "$url/metrics" | grep -E '^earmark_(identifications_total|index_tracks)'
