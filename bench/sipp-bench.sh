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

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v sipp >/dev/null 2>&1 || die "sipp not found (Debian: apt-get install sip-tester)"

# ---- processes, stopped by pid on exit -------------------------------------------------
NODE_PID=""
UAS_PID=""
SIPP_PID=""

stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$SIPP_PID"
    stop_pid "$UAS_PID"
    stop_pid "$NODE_PID"
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- limits ----------------------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
    ulimit -n 65536 || true
else
    ulimit -n "$hard" || true
fi

# ---- node ------------------------------------------------------------------------------
if [ -z "${P2PSIP_BIN:-}" ]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release -p p2psip >&2)
    P2PSIP_BIN="$ROOT/target/release/p2psip"
fi
[ -x "$P2PSIP_BIN" ] || die "no node binary at $P2PSIP_BIN"

# Checked right before use: a UDP socket bound with SO_REUSEADDR can share a port
# without an error, so a busy port would silently split the traffic.
for port in "$NODE_PORT" "$REG_PORT" "$UAS_PORT" "$UAC_PORT"; do
    if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hlun "sport = :$port" 2>/dev/null)" ]; then
        die "UDP port $port is in use; set NODE_PORT"
    fi
done

mkdir -p "$BENCH_DIR/node"
log "starting the node on 127.0.0.1:$NODE_PORT (logs in $BENCH_DIR)"
# shellcheck disable=SC2086 # NODE_ARGS is a list of words
"$P2PSIP_BIN" node \
    --listen "udp:127.0.0.1:$NODE_PORT" --listen "tcp:127.0.0.1:$NODE_PORT" \
    --open --domain "$DOMAIN" --data-dir "$BENCH_DIR/node" ${NODE_ARGS:-} \
    </dev/null >"$BENCH_DIR/node.stdout" 2>"$BENCH_DIR/node.stderr" &
NODE_PID=$!
for i in $(seq 1 200); do
    [ -s "$BENCH_DIR/node/node.json" ] && break
    kill -0 "$NODE_PID" 2>/dev/null || { tail -20 "$BENCH_DIR/node.stderr" >&2; die "the node exited"; }
    sleep 0.1
done
[ -s "$BENCH_DIR/node/node.json" ] || die "the node did not write node.json within 20 s"

CLK_TCK=$(getconf CLK_TCK)
# utime + stime of the node, in clock ticks.
node_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$NODE_PID/stat" 2>/dev/null || echo 0
}

# ---- SIPp ------------------------------------------------------------------------------
SIPP_COMMON=(-i 127.0.0.1 -bind_local -nostdin -buff_size 8388608 -max_socket 60000
    -max_recv_loops 10000 -max_sched_loops 10000)

# Runs one SIPp client step in the foreground (tracked for cleanup); stats go to $1.csv.
run_sipp() {
    local out=$1
    shift
    sipp "$@" "${SIPP_COMMON[@]}" -trace_stat -stf "$out.csv" -fd 1 \
        -trace_err -error_file "$out.errors.log" \
        -trace_screen -screen_file "$out.screen.log" \
        </dev/null >/dev/null 2>"$out.stderr" &
    SIPP_PID=$!
    local rc=0
    wait "$SIPP_PID" || rc=$?
    SIPP_PID=""
    return "$rc"
}

# "successful failed achieved_rate" from the last row of a SIPp statistics file.
sipp_result() {
    awk -F';' '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { last = $0 }
        END {
            if (last == "") { print "0 0 0"; exit }
            n = split(last, f, ";")
            split(f[col["StartTime"]], s, "\t")
            split(f[col["CurrentTime"]], c, "\t")
            ok = f[col["SuccessfulCall(C)"]] + 0
            failed = f[col["FailedCall(C)"]] + 0
            secs = c[3] - s[3]
            printf "%d %d %.0f\n", ok, failed, (secs > 0 ? ok / secs : 0)
        }' "$1"
}

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
    t0=$(node_ticks)
    s0=$(date +%s.%N)
    rc=0
    run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/register_open.xml" -t u1 \
        -p "$REG_PORT" -inf "$BENCH_DIR/users.csv" -key domain "$DOMAIN" \
        -default_behaviors all,-bye -m "$calls" -r "$rate" -l $((rate < 2000 ? 2000 : rate)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    t1=$(node_ticks)
    read -r ok failed achieved < <(sipp_result "$out.csv")
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v x="$s0" -v y="$s1" \
        'BEGIN { printf "%.0f", (b - a) / hz / (y - x) * 100 }')
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
sipp -sf "$SCENARIOS/uas_call.xml" -t u1 -p "$UAS_PORT" "${SIPP_COMMON[@]}" \
    -trace_err -error_file "$BENCH_DIR/uas.errors.log" \
    </dev/null >/dev/null 2>"$BENCH_DIR/uas.stderr" &
UAS_PID=$!
for i in $(seq 1 100); do
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hlun "sport = :$UAS_PORT" 2>/dev/null)" ] && break
    else
        sleep 1
        break
    fi
    sleep 0.1
done
kill -0 "$UAS_PID" 2>/dev/null || die "the UAS exited: $(tail -5 "$BENCH_DIR/uas.stderr")"

run_sipp "$BENCH_DIR/register-bob" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/register_contact.xml" \
    -t u1 -p "$REG_PORT" -key user bob -key domain "$DOMAIN" -key contact_port "$UAS_PORT" \
    -key contact_transport udp -default_behaviors all,-bye -m 1 -timeout 20s -timeout_error ||
    die "registering the UAS failed (see $BENCH_DIR/register-bob.*)"

best_calls=0
best_calls_cpu=""
for rate in $CALL_RATES; do
    calls=$((rate * STEP_SECONDS))
    out="$BENCH_DIR/calls-$rate"
    t0=$(node_ticks)
    s0=$(date +%s.%N)
    rc=0
    run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 -p "$UAC_PORT" \
        -s bob -key domain "$DOMAIN" -m "$calls" -r "$rate" -l $((rate * 2)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    t1=$(node_ticks)
    read -r ok failed achieved < <(sipp_result "$out.csv")
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v x="$s0" -v y="$s1" \
        'BEGIN { printf "%.0f", (b - a) / hz / (y - x) * 100 }')
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
