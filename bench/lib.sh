# Shell functions shared by the benchmarks in this directory; sourced, not run.
#
# The sourcing script sets ROOT, SCENARIOS, DOMAIN and BENCH_DIR (and P2PSIP_BIN if it
# has one) before calling these. Sourcing installs the exit trap that stops, by pid, every
# process started through these functions.
# shellcheck shell=bash

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_sipp() {
    command -v sipp >/dev/null 2>&1 || die "sipp not found (Debian: apt-get install sip-tester)"
}

# ---- processes, stopped by pid on exit -------------------------------------------------
NODE_PIDS=()
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
    local pid
    stop_pid "$SIPP_PID"
    stop_pid "$UAS_PID"
    for pid in "${NODE_PIDS[@]}"; do
        stop_pid "$pid"
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- set-up ----------------------------------------------------------------------------
# Raises the open-file limit to 65536, or to the hard limit if that is lower.
raise_file_limit() {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
        ulimit -n 65536 || true
    else
        ulimit -n "$hard" || true
    fi
}

# Sets P2PSIP_BIN to a release build unless it is set already.
ensure_binary() {
    if [ -z "${P2PSIP_BIN:-}" ]; then
        log "building the release binary"
        (cd "$ROOT" && cargo build --release -p p2psip >&2)
        P2PSIP_BIN="$ROOT/target/release/p2psip"
    fi
    [ -x "$P2PSIP_BIN" ] || die "no node binary at $P2PSIP_BIN"
}

# check_ports_free HINT PORT...: dies if a port is in use (UDP or TCP), naming HINT.
# Checked right before use: a UDP socket bound with SO_REUSEADDR can share a port
# without an error, so a busy port would silently split the traffic.
check_ports_free() {
    local hint=$1 port
    shift
    command -v ss >/dev/null 2>&1 || return 0
    for port in "$@"; do
        if [ -n "$(ss -Hlun "sport = :$port" 2>/dev/null)" ] ||
            [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
            die "port $port is in use; set $hint"
        fi
    done
}

# ---- nodes -----------------------------------------------------------------------------
NODE_READY_TRIES=200 # x 0.1 s: a node gets ready

LAST_PID=""
# launch_node NAME SIP_PORT [ARG...]: starts `p2psip node` on 127.0.0.1:SIP_PORT (UDP
# and TCP) serving DOMAIN with its data in $BENCH_DIR/NAME, the ARGs and NODE_ARGS added;
# output goes to $BENCH_DIR/NAME.stdout and .stderr. Sets LAST_PID. NODE_CONFIG_EXTRA (TOML
# tables) is added to its config file. The node's per-source
# limits are lifted (a config file of its own): SIPp sends all its load, and registers all
# its users, from one address, and these benchmarks measure the node, not those limits.
launch_node() {
    local name=$1 port=$2 dir="$BENCH_DIR/$1"
    shift 2
    mkdir -p "$dir"
    printf '[limits]\nmax_requests_per_source = 0\nmax_bindings_per_source = 100000000\n' \
        >"$BENCH_DIR/$name.toml"
    if [ -n "${NODE_CONFIG_EXTRA:-}" ]; then
        printf '%s\n' "$NODE_CONFIG_EXTRA" >>"$BENCH_DIR/$name.toml"
    fi
    # shellcheck disable=SC2086 # NODE_ARGS is a list of words
    # shellcheck disable=SC2086 # NODE_TASKSET is a command prefix, e.g. "taskset -c 0"
    ${NODE_TASKSET:-} "$P2PSIP_BIN" node --listen "udp:127.0.0.1:$port" --listen "tcp:127.0.0.1:$port" \
        --open --domain "$DOMAIN" --data-dir "$dir" --config "$BENCH_DIR/$name.toml" \
        "$@" ${NODE_ARGS:-} \
        </dev/null >"$BENCH_DIR/$name.stdout" 2>"$BENCH_DIR/$name.stderr" &
    LAST_PID=$!
    NODE_PIDS+=("$LAST_PID")
}

# wait_node NAME PID COMMAND...: runs COMMAND (in this shell) every 0.1 s until it
# succeeds, NODE_READY_TRIES times at most; dies with the tail of the node's stderr if the
# node exits first. Fails if COMMAND never succeeded.
wait_node() {
    local name=$1 pid=$2 i
    shift 2
    for i in $(seq 1 "$NODE_READY_TRIES"); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null ||
            { tail -20 "$BENCH_DIR/$name.stderr" >&2; die "node $name exited"; }
        sleep 0.1
    done
    "$@"
}

# ---- CPU -------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks.
ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# percent of one core: cpu_percent TICKS0 TICKS1 SECONDS0 SECONDS1
cpu_percent() {
    awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" -v x="$3" -v y="$4" \
        'BEGIN { printf "%.0f", (y > x ? (b - a) / hz / (y - x) * 100 : 0) }'
}

# ---- SIPp ------------------------------------------------------------------------------
SIPP_COMMON=(-i 127.0.0.1 -bind_local -nostdin -buff_size 8388608 -max_socket 60000
    -max_recv_loops 10000 -max_sched_loops 10000)

# Runs one SIPp client in the foreground (tracked for cleanup); stats go to $1.csv.
run_sipp() {
    local out=$1
    shift
    # shellcheck disable=SC2086 # SIPP_TASKSET is a command prefix, e.g. "taskset -c 1"
    ${SIPP_TASKSET:-} sipp "$@" "${SIPP_COMMON[@]}" -trace_stat -stf "$out.csv" -fd 1 \
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
        }' "$1" 2>/dev/null || echo "0 0 0"
}

# start_uas PORT: a SIPp UAS (uas_call.xml) on 127.0.0.1:PORT in the background, tracked
# for cleanup; waits until it listens.
start_uas() {
    local port=$1 i
    # shellcheck disable=SC2086 # see run_sipp
    ${SIPP_TASKSET:-} sipp -sf "$SCENARIOS/uas_call.xml" -t u1 -p "$port" "${SIPP_COMMON[@]}" \
        -trace_err -error_file "$BENCH_DIR/uas.errors.log" \
        </dev/null >/dev/null 2>"$BENCH_DIR/uas.stderr" &
    UAS_PID=$!
    for i in $(seq 1 100); do
        if command -v ss >/dev/null 2>&1; then
            [ -n "$(ss -Hlun "sport = :$port" 2>/dev/null)" ] && break
        else
            sleep 1
            break
        fi
        sleep 0.1
    done
    kill -0 "$UAS_PID" 2>/dev/null || die "the UAS exited: $(tail -5 "$BENCH_DIR/uas.stderr")"
}

# register_uas NODE_PORT FROM_PORT UAS_PORT: registers bob@DOMAIN at the node on
# 127.0.0.1:NODE_PORT with the UAS on UAS_PORT as contact, from FROM_PORT.
register_uas() {
    run_sipp "$BENCH_DIR/register-bob" "127.0.0.1:$1" -sf "$SCENARIOS/register_contact.xml" \
        -t u1 -p "$2" -key user bob -key domain "$DOMAIN" -key contact_port "$3" \
        -key contact_transport udp -default_behaviors all,-bye -m 1 -timeout 20s -timeout_error ||
        die "registering the UAS failed (see $BENCH_DIR/register-bob.*)"
}
