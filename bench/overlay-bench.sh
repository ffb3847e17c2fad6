#!/usr/bin/env bash
# Two-node overlay benchmark on loopback: DHT lookup latency and calls per second between
# two p2psip nodes, with SIPp generating the calls.
#
#   bench/overlay-bench.sh            full run (release build, rate ladder below)
#   bench/overlay-bench.sh --quick    small rates, a few seconds per step (smoke test)
#
# Set-up: node A (first node), FILLER_NODES more nodes joined through A so the DHT has more
# than two members, node B joined through A. A SIPp UAS is registered as bob@example.com at
# node B only, so node A knows bob only through the DHT.
#
# (i)  Lookup latency: `p2psip lookup bob@example.com --repeat LOOKUP_REPEAT` through node
#      A (a fresh DHT client, one lookup at a time): min / median / p90 / p99 / max.
# (ii) Calls/s across the nodes: a SIPp UAC sends INVITE/ACK/BYE for bob to node A at
#      increasing rates; node A finds bob through the DHT (then in its route cache, for up
#      to 30 s per lookup), forwards over the overlay to node B, which forwards to the UAS.
#      The result is the highest achieved rate of a step without a failed call.
#
# Environment (all optional):
#   P2PSIP_BIN    node binary to use (skips `cargo build --release`)
#   FILLER_NODES  extra overlay nodes besides A and B   (default 3; 0: just A and B)
#   LOOKUP_REPEAT lookups timed in (i)                  (default 1000, at most 10000)
#   CALL_RATES    call rates per second                 (default "200 500 1000 1500 2000 3000")
#   STEP_SECONDS  seconds of traffic per step           (default 10)
#   BASE_PORT     node A's UDP+TCP SIP port             (default 26060); node B uses the
#                 next port, the UAS, REGISTER client and UAC the three after, fillers
#                 the ones after those
#   NODE_ARGS     extra arguments for every `p2psip node`
#   KEEP_GOING=1  run every step even after one fails
#   BENCH_DIR     where logs go                         (default: a new directory under /tmp)
#
# Only 127.0.0.1 is used. Every process started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SCENARIOS="$ROOT/tests/scenarios"
DOMAIN=example.com
AOR="bob@$DOMAIN"

FILLER_NODES=${FILLER_NODES:-3}
LOOKUP_REPEAT=${LOOKUP_REPEAT:-1000}
CALL_RATES=${CALL_RATES:-"200 500 1000 1500 2000 3000"}
STEP_SECONDS=${STEP_SECONDS:-10}
if [ "${1:-}" = "--quick" ]; then
    FILLER_NODES=${QUICK_FILLER_NODES:-1}
    LOOKUP_REPEAT=${QUICK_LOOKUP_REPEAT:-100}
    CALL_RATES=${QUICK_CALL_RATES:-"50 100"}
    STEP_SECONDS=${QUICK_STEP_SECONDS:-3}
fi
BASE_PORT=${BASE_PORT:-26060}
A_PORT=$BASE_PORT
B_PORT=$((BASE_PORT + 1))
UAS_PORT=$((BASE_PORT + 2))
REG_PORT=$((BASE_PORT + 3))
UAC_PORT=$((BASE_PORT + 4))
FILLER_PORT=$((BASE_PORT + 5))
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/p2psip-overlay-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"

# Bounds of the waits below.
LOOKUP_READY_TRIES=30 # lookups of bob, 5 s each at most, before giving up
LOOKUP_TIMEOUT=300    # --timeout of the timed lookups, seconds

require_sipp
for n in "$FILLER_NODES" "$LOOKUP_REPEAT" "$STEP_SECONDS" "$BASE_PORT"; do
    case $n in '' | *[!0-9]*) die "not a number: \"$n\"" ;; esac
done
[ "$FILLER_NODES" -le 20 ] || die "FILLER_NODES: at most 20"
[ "$LOOKUP_REPEAT" -ge 1 ] && [ "$LOOKUP_REPEAT" -le 10000 ] || die "LOOKUP_REPEAT: 1 to 10000"
[ "$STEP_SECONDS" -ge 1 ] && [ "$STEP_SECONDS" -le 600 ] || die "STEP_SECONDS: 1 to 600"
for r in $CALL_RATES; do
    case $r in '' | *[!0-9]*) die "CALL_RATES: not a number: \"$r\"" ;; esac
    [ "$r" -ge 1 ] && [ "$r" -le 100000 ] || die "CALL_RATES: $r out of 1..100000"
done

raise_file_limit
ensure_binary

ports=("$A_PORT" "$B_PORT" "$UAS_PORT" "$REG_PORT" "$UAC_PORT")
for i in $(seq 1 "$FILLER_NODES"); do
    ports+=($((FILLER_PORT + i - 1)))
done
check_ports_free BASE_PORT "${ports[@]}"

# ---- nodes -----------------------------------------------------------------------------
# The 127.0.0.1 overlay address (ending in /p2p/<peer id>) in a node's node.json, if any.
loopback_p2p_addr() {
    grep -o '"/ip4/127\.0\.0\.1/tcp/[0-9]*/p2p/[1-9A-HJ-NP-Za-km-z]*"' "$1/node.json" 2>/dev/null |
        head -n 1 | tr -d '"' || true
}

LAST_ADDR=""
# Sets LAST_ADDR to the overlay address of the node with data in $1; fails if none yet.
read_p2p_addr() {
    LAST_ADDR=$(loopback_p2p_addr "$1")
    [ -n "$LAST_ADDR" ]
}

# start_node NAME SIP_PORT [BOOTSTRAP]: starts a node, waits for its overlay address;
# sets LAST_PID and LAST_ADDR.
start_node() {
    local name=$1 port=$2 bootstrap=${3:-}
    local args=(--no-mdns --p2p-listen /ip4/127.0.0.1/tcp/0)
    [ -z "$bootstrap" ] || args+=(--bootstrap "$bootstrap")
    launch_node "$name" "$port" "${args[@]}"
    LAST_ADDR=""
    wait_node "$name" "$LAST_PID" read_p2p_addr "$BENCH_DIR/$name" ||
        die "node $name did not write its overlay address within 20 s"
    log "node $name: SIP 127.0.0.1:$port, overlay $LAST_ADDR (pid $LAST_PID)"
}

log "logs in $BENCH_DIR"
start_node a "$A_PORT"
A_PID=$LAST_PID
A_ADDR=$LAST_ADDR
FILLER_PIDS=()
for i in $(seq 1 "$FILLER_NODES"); do
    start_node "filler$i" $((FILLER_PORT + i - 1)) "$A_ADDR"
    FILLER_PIDS+=("$LAST_PID")
done
start_node b "$B_PORT" "$A_ADDR"
B_PID=$LAST_PID

peers_line=$("$P2PSIP_BIN" peers --bootstrap "$A_ADDR" --timeout 10 2>"$BENCH_DIR/peers.stderr" |
    tee "$BENCH_DIR/peers.stdout" | head -n 1 || true)
log "a fresh client through node a sees: ${peers_line:-nothing (see $BENCH_DIR/peers.stderr)}"

# ---- bob at node B ---------------------------------------------------------------------
log "starting the UAS on 127.0.0.1:$UAS_PORT, registering it as $AOR at node b"
start_uas "$UAS_PORT"
register_uas "$B_PORT" "$REG_PORT" "$UAS_PORT"

found=0
for i in $(seq 1 "$LOOKUP_READY_TRIES"); do
    if "$P2PSIP_BIN" lookup "$AOR" --bootstrap "$A_ADDR" --timeout 5 \
        >"$BENCH_DIR/lookup-ready.stdout" 2>"$BENCH_DIR/lookup-ready.stderr"; then
        found=1
        break
    fi
    sleep 1
done
[ "$found" = 1 ] || die "$AOR was not found in the DHT (see $BENCH_DIR/lookup-ready.*)"
log "$AOR is in the DHT: $(head -n 1 "$BENCH_DIR/lookup-ready.stdout")"

# ---- (i) lookup latency ----------------------------------------------------------------
log "timing $LOOKUP_REPEAT lookups of $AOR through node a"
lookup_rc=0
"$P2PSIP_BIN" lookup "$AOR" --repeat "$LOOKUP_REPEAT" --bootstrap "$A_ADDR" \
    --timeout "$LOOKUP_TIMEOUT" >"$BENCH_DIR/lookup-repeat.stdout" \
    2>"$BENCH_DIR/lookup-repeat.stderr" || lookup_rc=$?
cat "$BENCH_DIR/lookup-repeat.stdout" >&2
lookup_latency=$(awk '/^latency ms: min/ { print "median " $6 " p99 " $10; exit }' \
    "$BENCH_DIR/lookup-repeat.stdout")
lookup_counts=$(head -n 1 "$BENCH_DIR/lookup-repeat.stdout" | sed 's/^[^:]*: //')
[ "$lookup_rc" -eq 0 ] || log "warning: not every lookup found $AOR (exit $lookup_rc)"

# ---- (ii) calls across the two nodes ---------------------------------------------------
summary=()
best_calls=0
best_cpu=""
for rate in $CALL_RATES; do
    calls=$((rate * STEP_SECONDS))
    out="$BENCH_DIR/calls-$rate"
    a0=$(ticks "$A_PID")
    b0=$(ticks "$B_PID")
    f0=0
    for pid in "${FILLER_PIDS[@]}"; do f0=$((f0 + $(ticks "$pid"))); done
    s0=$(date +%s.%N)
    rc=0
    run_sipp "$out" "127.0.0.1:$A_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 -p "$UAC_PORT" \
        -s bob -key domain "$DOMAIN" -m "$calls" -r "$rate" -l $((rate < 100 ? 200 : rate * 2)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    a1=$(ticks "$A_PID")
    b1=$(ticks "$B_PID")
    f1=0
    for pid in "${FILLER_PIDS[@]}"; do f1=$((f1 + $(ticks "$pid"))); done
    read -r ok failed achieved < <(sipp_result "$out.csv")
    cpu_a=$(cpu_percent "$a0" "$a1" "$s0" "$s1")
    cpu_b=$(cpu_percent "$b0" "$b1" "$s0" "$s1")
    cpu_f=$(cpu_percent "$f0" "$f1" "$s0" "$s1")
    line=$(printf 'calls A->B target %5d/s: %6d ok, %5d failed, achieved %5d/s, CPU node a %3s%% node b %3s%% fillers %3s%%, sipp exit %d' \
        "$rate" "$ok" "$failed" "$achieved" "$cpu_a" "$cpu_b" "$cpu_f" "$rc")
    log "$line"
    summary+=("$line")
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]; then
        if [ "$achieved" -gt "$best_calls" ]; then
            best_calls=$achieved
            best_cpu="node a CPU ${cpu_a}%, node b CPU ${cpu_b}%"
        fi
    elif [ "${KEEP_GOING:-0}" != 1 ]; then
        break
    fi
    sleep 2
done

for pid in "${NODE_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || log "warning: node pid $pid is no longer running"
done

echo
echo "== p2psip overlay benchmark ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' | sed 's/[.]$//' || true), $(nproc) cores, $((FILLER_NODES + 2)) nodes, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, logs in $BENCH_DIR)"
echo "lookups of $AOR through node a: ${lookup_counts:-none}"
for line in "${summary[@]}"; do
    echo "$line"
done
echo "lookup latency ms: ${lookup_latency:-not measured}"
echo "cross-node calls/s max: $best_calls${best_cpu:+ ($best_cpu)}"
