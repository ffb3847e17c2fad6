#!/usr/bin/env bash
# Load benchmark of one p2psip node on loopback, driven by SIPp.
#
#   bench/sipp-bench.sh            full run (release build, rate ladders below)
#   bench/sipp-bench.sh --quick    small rates, a few seconds per step (smoke test)
#
# (i)  REGISTER: SIPp registers distinct users (injection file) at increasing rates; the
#      result is the highest achieved rate of a step with no failed call.
# (ii) Calls: a SIPp UAS registered as bob@example.com, a SIPp UAC calling it through the
#      node (INVITE/100/180/200/ACK/BYE/200, ACK and BYE routed through the node by its
#      Record-Route) at increasing rates; same criterion.
#
# Environment (all optional):
#   P2PSIP_BIN   node binary to use (skips `cargo build --release`)
#   REG_RATES    REGISTER rates per second     (default "10000 20000 30000 40000 45000 50000 60000")
#   CALL_RATES   call rates per second         (default "2000 4000 6000 7000 8000 9000 10000")
#   STEP_SECONDS seconds of traffic per step   (default 10)
#   NODE_PORT    node UDP+TCP port             (default 25060); SIPp uses the next three
#   NODE_ARGS    extra arguments for `p2psip node`
#   KEEP_GOING=1 run every step even after one fails
#   BENCH_DIR    where logs go                 (default: a new directory under /tmp)
#
# Only 127.0.0.1 is used. Every process started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SCENARIOS="$ROOT/tests/scenarios"
DOMAIN=example.com

REG_RATES=${REG_RATES:-"10000 20000 30000 40000 45000 50000 60000"}
CALL_RATES=${CALL_RATES:-"2000 4000 6000 7000 8000 9000 10000"}
STEP_SECONDS=${STEP_SECONDS:-10}
if [ "${1:-}" = "--quick" ]; then
    REG_RATES=${QUICK_REG_RATES:-"500 1000 2000"}
    CALL_RATES=${QUICK_CALL_RATES:-"100 200 400"}
    STEP_SECONDS=${QUICK_STEP_SECONDS:-3}
fi
NODE_PORT=${NODE_PORT:-25060}
REG_PORT=$((NODE_PORT + 1))
UAS_PORT=$((NODE_PORT + 2))
UAC_PORT=$((NODE_PORT + 3))
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/p2psip-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"

require_sipp
raise_file_limit
ensure_binary
check_ports_free NODE_PORT "$NODE_PORT" "$REG_PORT" "$UAS_PORT" "$UAC_PORT"

log "starting the node on 127.0.0.1:$NODE_PORT (logs in $BENCH_DIR)"
launch_node node "$NODE_PORT"
NODE_PID=$LAST_PID
wait_node node "$NODE_PID" test -s "$BENCH_DIR/node/node.json" ||
    die "the node did not write node.json within 20 s"

# ---- (i) REGISTER ----------------------------------------------------------------------
max_reg_rate=0
for r in $REG_RATES; do
    if [ "$r" -gt "$max_reg_rate" ]; then
        max_reg_rate=$r
    fi
done
users=$((max_reg_rate * STEP_SECONDS))
log "writing $users users"
awk -v n="$users" 'BEGIN { print "SEQUENTIAL"; for (i = 0; i < n; i++) printf "b%07d\n", i }' \
    >"$BENCH_DIR/users.csv"

best_reg=0
best_reg_cpu=""
summary=()
for rate in $REG_RATES; do
    calls=$((rate * STEP_SECONDS))
    out="$BENCH_DIR/register-$rate"
    t0=$(ticks "$NODE_PID")
    s0=$(date +%s.%N)
    rc=0
    run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/register_open.xml" -t u1 \
        -p "$REG_PORT" -inf "$BENCH_DIR/users.csv" -key domain "$DOMAIN" \
        -default_behaviors all,-bye -m "$calls" -r "$rate" -l $((rate < 2000 ? 2000 : rate)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    t1=$(ticks "$NODE_PID")
    read -r ok failed achieved < <(sipp_result "$out.csv")
    cpu=$(cpu_percent "$t0" "$t1" "$s0" "$s1")
    line=$(printf 'REGISTER target %6d/s: %7d ok, %5d failed, achieved %6d/s, node CPU %4s%%, sipp exit %d' \
        "$rate" "$ok" "$failed" "$achieved" "$cpu" "$rc")
    log "$line"
    summary+=("$line")
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]; then
        if [ "$achieved" -gt "$best_reg" ]; then
            best_reg=$achieved
            best_reg_cpu=$cpu
        fi
    elif [ "${KEEP_GOING:-0}" != 1 ]; then
        break
    fi
    sleep 2
done

# ---- (ii) calls ------------------------------------------------------------------------
log "starting the UAS on 127.0.0.1:$UAS_PORT"
start_uas "$UAS_PORT"
register_uas "$NODE_PORT" "$REG_PORT" "$UAS_PORT"

best_calls=0
best_calls_cpu=""
for rate in $CALL_RATES; do
    calls=$((rate * STEP_SECONDS))
    out="$BENCH_DIR/calls-$rate"
    t0=$(ticks "$NODE_PID")
    s0=$(date +%s.%N)
    rc=0
    run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 -p "$UAC_PORT" \
        -s bob -key domain "$DOMAIN" -m "$calls" -r "$rate" -l $((rate * 2)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    t1=$(ticks "$NODE_PID")
    read -r ok failed achieved < <(sipp_result "$out.csv")
    cpu=$(cpu_percent "$t0" "$t1" "$s0" "$s1")
    line=$(printf 'calls    target %6d/s: %7d ok, %5d failed, achieved %6d/s, node CPU %4s%%, sipp exit %d' \
        "$rate" "$ok" "$failed" "$achieved" "$cpu" "$rc")
    log "$line"
    summary+=("$line")
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]; then
        if [ "$achieved" -gt "$best_calls" ]; then
            best_calls=$achieved
            best_calls_cpu=$cpu
        fi
    elif [ "${KEEP_GOING:-0}" != 1 ]; then
        break
    fi
    sleep 2
done

kill -0 "$NODE_PID" 2>/dev/null || log "warning: the node is no longer running"

echo
echo "== p2psip SIPp benchmark ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' | sed 's/[.]$//' || true), $(nproc) cores, logs in $BENCH_DIR)"
for line in "${summary[@]}"; do
    echo "$line"
done
echo "REGISTER/s max: $best_reg${best_reg_cpu:+ (node CPU ${best_reg_cpu}%)}"
echo "calls/s max: $best_calls${best_calls_cpu:+ (node CPU ${best_calls_cpu}%)}"
