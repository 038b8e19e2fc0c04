#!/usr/bin/env bash
# cluster.sh CATALOG.csv TRUTH.csv [SHARDS] [REPLICAS] [RATE] [SECONDS] - an
# earmark cluster on loopback, measured against a single node:
#  1. indexes the catalog's files (column `abspath`) once whole and once per
#     shard (`index add --shard k/K`), and copies each shard per replica;
#  2. starts nats-server (JetStream on), SHARDS x REPLICAS shard nodes and a
#     gateway, all separate processes;
#  3. identifies every clip of TRUTH (ground truth of make_queries.py) with
#     the single node (`identify --json`) and through the gateway's HTTP API,
#     and prints how many answers agree and the NATS hop the gateway measured;
#  4. sends 10 s clips at RATE requests/s (default 40) for SECONDS (default
#     30) with benches/serve_load.rs and, half-way, kills one replica of every
#     shard (SIGKILL), then prints errors and latency percentiles.
# Work files go to $EARMARK_CLUSTER_DIR (default: a temporary directory,
# removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
catalog=$1 truth=$2 shards=${3:-3} replicas=${4:-2} rate=${5:-40} seconds=${6:-30}
command -v nats-server >/dev/null || scripts/setup.sh
cargo build --release --quiet
cargo bench --bench serve_load --no-run --quiet 2>/dev/null
earmark=$PWD/target/release/earmark
work=${EARMARK_CLUSTER_DIR:-}
if [ -z "$work" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${EARMARK_CLUSTER_DIR:-}" ] || rm -rf "$work"
}
trap stop EXIT

python3 -c 'import csv,sys; [print(r["abspath"]) for r in csv.DictReader(open(sys.argv[1]))]' \
    "$catalog" >"$work/files.txt"
mapfile -t files <"$work/files.txt"
index() { # DB [--shard k/K]
    [ -e "$1/manifest.json" ] && return
    "$earmark" index add --db "$1" --metadata "$catalog" "${@:2}" "${files[@]}" | tail -1
}
index "$work/single"
for k in $(seq "$shards"); do
    index "$work/shard$k" --shard "$k/$shards"
    for r in $(seq "$replicas"); do
        [ -e "$work/shard$k-$r" ] || cp -r "$work/shard$k" "$work/shard$k-$r"
    done
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf "$work/jetstream"
printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n' \
    "$port" "$work/jetstream" >"$work/nats.conf"
nats-server -c "$work/nats.conf" 2>"$work/nats.log" &
pids+=($!)
nats=nats://127.0.0.1:$port
until grep -q "Server is ready" "$work/nats.log"; do sleep 0.1; done
declare -A replica
for k in $(seq "$shards"); do
    for r in $(seq "$replicas"); do
        "$earmark" serve --db "$work/shard$k-$r" --shard "$k/$shards" --replica "r$r" \
            --nats "$nats" 2>"$work/shard$k-$r.log" &
        pids+=($!)
        replica[$k-$r]=$!
    done
done
mkdir -p "$work/gateway"
"$earmark" serve --db "$work/gateway" --gateway --shards "$shards" --nats "$nats" \
    --listen 127.0.0.1:0 2>"$work/gateway.log" &
pids+=($!)
until grep -q "listening on" "$work/gateway.log"; do sleep 0.1; done
for k in $(seq "$shards"); do
    for r in $(seq "$replicas"); do
        until grep -q "replica" "$work/shard$k-$r.log"; do sleep 0.1; done
    done
done
url=$(sed -n 's/.*listening on //p' "$work/gateway.log")
key=$("$earmark" keys add --db "$work/gateway" --role lookup --name cluster.sh 2>/dev/null)
# One node over the whole catalog, asked the same clips over HTTP.
"$earmark" keys add --db "$work/single" --role lookup --name cluster.sh >"$work/single.key" 2>/dev/null
"$earmark" serve --db "$work/single" --listen 127.0.0.1:0 2>"$work/single.log" &
pids+=($!)
until grep -q "listening on" "$work/single.log"; do sleep 0.1; done
single_url=$(sed -n 's/.*listening on //p' "$work/single.log")
sleep 1 # the gateway rereads its keys every half second

dir=$(dirname "$truth")
python3 -c 'import csv,sys; [print(r["query_file"]) for r in csv.DictReader(open(sys.argv[1]))]' \
    "$truth" | sed "s|^|$dir/|" >"$work/queries.txt"
mapfile -t queries <"$work/queries.txt"
"$earmark" identify --db "$work/single" --json "${queries[@]}" >"$work/single.jsonl" || true
python3 - "$url" "$key" "$work/single.jsonl" "$truth" "$single_url" "$(cat "$work/single.key")" <<'EOF'
import csv, json, os, statistics, sys, urllib.request
url, key, single, truth, single_url, single_key = sys.argv[1:7]
expected = {r["query_file"]: (None if r["track_id"] == "NONE" else r["track_id"])
            for r in csv.DictReader(open(truth))}
same = near = total = 0
right = {"single node": 0, "cluster": 0}
hops, cluster_ms, added = [], [], []
for line in open(single):
    one = json.loads(line)
    if "match" not in one:
        continue
    body = open(one["file"], "rb").read()
    request = urllib.request.Request(url + "/v1/identify", body,
                                     {"Authorization": "Bearer " + key})
    many = json.load(urllib.request.urlopen(request))
    request = urllib.request.Request(single_url + "/v1/identify", body,
                                     {"Authorization": "Bearer " + single_key})
    alone = json.load(urllib.request.urlopen(request))
    added.append(many["elapsed_ms"] - alone["elapsed_ms"])
    a, b = one["match"], many["match"]
    ta, tb = a and a["track_id"], b and b["track_id"]
    total += 1
    want = expected[os.path.basename(one["file"])]
    right["single node"] += ta == want
    right["cluster"] += tb == want
    if ta == tb:
        same += 1
        near += ta is None or abs(a["offset_s"] - b["offset_s"]) <= 0.1
    else:
        print(f"differs: {os.path.basename(one['file'])} single {ta} cluster {tb} truth {want}")
    hops.append(many["nats_hop_ms"])
    cluster_ms.append(many["elapsed_ms"])
print(f"answers: {same} of {total} the same (track or no match) as the single node's; "
      f"{near} also within 0.1 s of its offset")
print("right answers: " + ", ".join(f"{k} {v} of {total}" for k, v in right.items()))
print(f"NATS hop (round trip less the work of the shard answering last, per round): "
      f"p50 {statistics.median(hops):.2f} ms, p99 {sorted(hops)[int(0.99 * (len(hops) - 1))]:.2f} ms")
print(f"gateway identify p50 {statistics.median(cluster_ms):.1f} ms (decode included)")
print(f"the cluster's time less one node's, the same clip over HTTP: "
      f"p50 {statistics.median(added):.2f} ms, p99 {sorted(added)[int(0.99 * (len(added) - 1))]:.2f} ms")
EOF

(
    sleep "$((seconds / 2))"
    for k in $(seq "$shards"); do kill -9 "${replica[$k-1]}"; done
    echo "killed replica 1 of every shard at $((seconds / 2)) s" >&2
) &
killer=$!
EARMARK_URL=$url EARMARK_API_KEY=$key EARMARK_LOAD_CLIPS=$truth \
EARMARK_LOAD_RATE=$rate EARMARK_LOAD_SECONDS=$seconds \
    cargo bench --quiet --bench serve_load
wait "$killer"
