#!/usr/bin/env bash
# Overload benchmark of one p2psip node on loopback, driven by SIPp.
#
#   bench/flood-bench.sh            full run (about 6 minutes)
#   bench/flood-bench.sh --quick    small rates, 5 s floods (smoke test)
#
# For each of two floods, on a fresh node (open registration, overlay on):
#  1. measures the node's capacity: the highest achieved rate of a short ladder with no
#     failed call (MAX_RATE skips it);
#  2. floods it at FLOOD_FACTOR (3) times that rate for FLOOD_SECONDS (60), while an OPTIONS
#     probe from 127.0.0.2 asks every 0.5 s (bench/options-probe.py) and the node's RSS is
#     sampled every second;
#  3. right after the flood, registers a new user and makes one call, and times both.
#
# Floods: (a) calls (uac_call.xml through the node to a SIPp UAS registered as bob);
#         (b) REGISTERs of new users (register_open.xml, one user per call).
#
# Completed calls during the flood are SIPp's successful calls divided by the flood's
# wall time; the target is at least 80% of the measured capacity. The node's per-source
# request limit (limits.max_requests_per_source) is off, as in every benchmark here (see
# launch_node in lib.sh): SIPp sends everything from one address, and this measures load
# shedding, not that limit.
#
# Environment (all optional): P2PSIP_BIN, NODE_PORT (default 26060; SIPp uses the next
# three), NODE_ARGS, BENCH_DIR, FLOOD_SECONDS, FLOOD_FACTOR, CALL_LADDER, REG_LADDER,
# MAX_CALL_RATE, MAX_REG_RATE (skip a ladder), NODE_TASKSET and SIPP_TASKSET (command
# prefixes such as "taskset -c 0" and "taskset -c 1": the node on one core, SIPp on the
# other, so that a starved load generator does not pass for a starved node).
#
# Only loopback addresses are used. Every process started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SCENARIOS="$ROOT/tests/scenarios"
DOMAIN=example.com

FLOOD_SECONDS=${FLOOD_SECONDS:-60}
FLOOD_FACTOR=${FLOOD_FACTOR:-3}
CALL_LADDER=${CALL_LADDER:-"2000 3000 4000 5000 6000 7000 8000"}
REG_LADDER=${REG_LADDER:-"5000 10000 15000 20000 25000 30000"}
LADDER_SECONDS=${LADDER_SECONDS:-5}
if [ "${1:-}" = "--quick" ]; then
    FLOOD_SECONDS=5
    CALL_LADDER="200 400"
    REG_LADDER="500 1000"
    LADDER_SECONDS=3
fi
NODE_PORT=${NODE_PORT:-26060}
REG_PORT=$((NODE_PORT + 1))
UAS_PORT=$((NODE_PORT + 2))
UAC_PORT=$((NODE_PORT + 3))
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/p2psip-flood.XXXXXX)}
mkdir -p "$BENCH_DIR"

require_sipp
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the OPTIONS probe"
raise_file_limit
ensure_binary

PROBE_PID=""
RSS_PID=""
stop_side_processes() {
    stop_pid "$PROBE_PID"
    stop_pid "$RSS_PID"
}
trap 'stop_side_processes; cleanup' EXIT

# The highest RSS (MiB) of pid $1, sampled every second into $2 until it exits.
sample_rss() {
    local pid=$1 out=$2
    (
        max=0
        for _ in $(seq 1 $((FLOOD_SECONDS * 4 + 600))); do
            rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$pid/status" 2>/dev/null || echo 0)
            [ "${rss:-0}" -gt "$max" ] && max=$rss
            echo "$max" >"$out"
            sleep 1
        done
    ) &
    RSS_PID=$!
}

# ladder SCENARIO_KIND RATES: echoes the best achieved rate with no failure.
ladder() {
    local kind=$1 rates=$2 best=0 rate calls out rc ok failed achieved
    for rate in $rates; do
        calls=$((rate * LADDER_SECONDS))
        out="$BENCH_DIR/ladder-$kind-$rate"
        rc=0
        sipp_load "$kind" "$out" "$rate" "$calls" $((LADDER_SECONDS * 3 + 20)) || rc=$?
        read -r ok failed achieved < <(sipp_result "$out.csv")
        log "$kind ladder $rate/s: $ok ok, $failed failed, achieved $achieved/s, exit $rc"
        if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]; then
            [ "$achieved" -gt "$best" ] && best=$achieved
        else
            break
        fi
        sleep 2
    done
    echo "$best"
}

# sipp_load KIND OUT RATE CALLS TIMEOUT: runs the call or REGISTER load.
sipp_load() {
    local kind=$1 out=$2 rate=$3 calls=$4 timeout=$5
    if [ "$kind" = calls ]; then
        run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 -p "$UAC_PORT" \
            -s bob -key domain "$DOMAIN" -m "$calls" -r "$rate" -l $((rate * 4)) \
            -recv_timeout 5000 -timeout "${timeout}s" -timeout_error
    else
        # Users named after the run, so that every run registers new ones.
        awk -v n="$calls" -v p="$(basename "$out" | tr -c 'a-z0-9\n' 'x')" \
            'BEGIN { print "SEQUENTIAL"; for (i = 0; i < n; i++) printf "%s%08d\n", p, i }' \
            >"$out.users.csv"
        run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/register_open.xml" -t u1 \
            -p "$REG_PORT" -inf "$out.users.csv" -key domain "$DOMAIN" \
            -default_behaviors all,-bye -m "$calls" -r "$rate" -l $((rate * 4)) \
            -recv_timeout 5000 -timeout "${timeout}s" -timeout_error
    fi
}

RESULTS=()
# flood KIND LADDER MAX: one whole flood experiment on a fresh node.
flood() {
    local kind=$1 rates=$2 max=$3 name="node-$1"
    check_ports_free NODE_PORT "$NODE_PORT" "$REG_PORT" "$UAS_PORT" "$UAC_PORT"
    launch_node "$name" "$NODE_PORT"
    local node_pid=$LAST_PID
    wait_node "$name" "$node_pid" test -s "$BENCH_DIR/$name/node.json" ||
        die "the node did not write node.json within 20 s"
    start_uas "$UAS_PORT"
    register_uas "$NODE_PORT" "$REG_PORT" "$UAS_PORT"

    if [ -z "$max" ]; then
        max=$(ladder "$kind" "$rates")
    fi
    [ "$max" -gt 0 ] || die "no $kind rate of the ladder passed"
    local rate=$((max * FLOOD_FACTOR)) calls out="$BENCH_DIR/flood-$kind"
    calls=$((rate * FLOOD_SECONDS))
    log "$kind: capacity $max/s; flooding at $rate/s for $FLOOD_SECONDS s"
    sample_rss "$node_pid" "$BENCH_DIR/$kind.rss"
    python3 "$ROOT/bench/options-probe.py" --target "127.0.0.1:$NODE_PORT" --source 127.0.0.2 \
        --interval 0.5 --duration $((FLOOD_SECONDS + 10)) >"$BENCH_DIR/$kind.probe" &
    PROBE_PID=$!
    local t0 s0 s1 t1 rc=0
    t0=$(ticks "$node_pid")
    s0=$(date +%s.%N)
    sipp_load "$kind" "$out" "$rate" "$calls" $((FLOOD_SECONDS + 30)) || rc=$?
    s1=$(date +%s.%N)
    t1=$(ticks "$node_pid")
    local ok failed achieved
    read -r ok failed achieved < <(sipp_result "$out.csv")
    local offered
    offered=$(awk -v n="$calls" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.0f", n / (b - a) }')

    # Right after the flood: a new user registers and bob is called, each within 5 s.
    local after_start after_reg after_call reg_rc=0 call_rc=0
    after_start=$(date +%s.%N)
    run_sipp "$BENCH_DIR/after-$kind-register" "127.0.0.1:$NODE_PORT" \
        -sf "$SCENARIOS/register_contact.xml" -t u1 -p $((UAC_PORT + 10)) -key user carol \
        -key domain "$DOMAIN" -key contact_port $((UAC_PORT + 11)) -key contact_transport udp \
        -default_behaviors all,-bye -m 1 -timeout 5s -timeout_error || reg_rc=$?
    after_reg=$(date +%s.%N)
    run_sipp "$BENCH_DIR/after-$kind-call" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" \
        -t u1 -p $((UAC_PORT + 12)) -s bob -key domain "$DOMAIN" -m 1 -timeout 5s \
        -timeout_error || call_rc=$?
    after_call=$(date +%s.%N)
    wait "$PROBE_PID" 2>/dev/null || true
    PROBE_PID=""
    sleep 1
    stop_pid "$RSS_PID"
    RSS_PID=""
    local cpu rss probe
    cpu=$(cpu_percent "$t0" "$t1" "$s0" "$s1")
    rss=$(cat "$BENCH_DIR/$kind.rss" 2>/dev/null || echo "?")
    probe=$(cat "$BENCH_DIR/$kind.probe")
    local share
    share=$(awk -v a="$achieved" -v m="$max" 'BEGIN { printf "%.0f", 100 * a / m }')
    RESULTS+=("$kind flood: capacity $max/s, offered $offered/s for $FLOOD_SECONDS s (target $rate/s): completed $achieved/s = $share% of capacity ($ok ok, $failed failed); node CPU $cpu%; peak RSS $rss MiB")
    RESULTS+=("  OPTIONS during the flood: $probe")
    RESULTS+=("  after the flood: REGISTER $(awk -v a="$after_start" -v b="$after_reg" 'BEGIN { printf "%.2f", b - a }') s (exit $reg_rc), call $(awk -v a="$after_reg" -v b="$after_call" 'BEGIN { printf "%.2f", b - a }') s (exit $call_rc)")
    log "${RESULTS[-3]}"
    log "node log lines about overload: $(grep -c "overloaded" "$BENCH_DIR/$name.stderr" || true)"
    stop_pid "$UAS_PID"
    UAS_PID=""
    stop_pid "$node_pid"
    sleep 2
}

flood calls "$CALL_LADDER" "${MAX_CALL_RATE:-}"
flood register "$REG_LADDER" "${MAX_REG_RATE:-}"

echo
echo "== p2psip flood benchmark ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' | sed 's/[.]$//' || true), $(nproc) cores, logs in $BENCH_DIR)"
for line in "${RESULTS[@]}"; do
    echo "$line"
done
