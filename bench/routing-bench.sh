#!/usr/bin/env bash
# Calls routed through ENUM and RFC 3263 beside calls to a local user, in the same run.
#
#   bench/routing-bench.sh            full run
#   bench/routing-bench.sh --quick    small rates, a few seconds per step (smoke test)
#
# A real name server (dnsmasq, a separate process on 127.0.0.1) serves an ENUM NAPTR for
# +4312345 (-> sip:12345@itsp-a.example) and itsp-a.example's NAPTR, SRV and A records,
# which lead to a SIPp UAS. The same UAS is registered at the node as bob@example.com. At
# each rate of CALL_RATES the SIPp UAC calls, for STEP_SECONDS each:
#   local: sip:bob@example.com        (the location table)
#   enum:  sip:+4312345@example.com   (ENUM, then RFC 3263 NAPTR/SRV/A, to the provider)
# The ENUM calls start after one warm-up call, so the node's route cache holds the answer;
# dnsmasq logs every query, and the queries counted during each step show whether calls
# still cost DNS lookups. The UAC is a trusted peer of the node (no digest exchange on
# either path), so the two differ only in routing.
#
# Environment (all optional):
#   P2PSIP_BIN   node binary (skips `cargo build --release`)
#   CALL_RATES   call rates per second   (default "1000 2000 3000 4000 5000 6000")
#   STEP_SECONDS seconds per step         (default 10)
#   NODE_PORT    node port (default 27060); SIPp uses the next three, dnsmasq the fourth
#   NODE_TASKSET / SIPP_TASKSET  command prefixes, e.g. "taskset -c 0"
#   KEEP_GOING=1 run every step even after one fails
#   BENCH_DIR    where logs go (default: a new directory under /tmp)
#
# Requires sipp (sip-tester) and dnsmasq (dnsmasq-base). Only 127.0.0.1 is used. Every
# process started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SCENARIOS="$ROOT/tests/scenarios"
DOMAIN=example.com
NUMBER=+4312345

CALL_RATES=${CALL_RATES:-"1000 2000 3000 4000 5000 6000"}
STEP_SECONDS=${STEP_SECONDS:-10}
if [ "${1:-}" = "--quick" ]; then
    CALL_RATES=${QUICK_CALL_RATES:-"100 200"}
    STEP_SECONDS=${QUICK_STEP_SECONDS:-3}
fi
NODE_PORT=${NODE_PORT:-27060}
REG_PORT=$((NODE_PORT + 1))
UAS_PORT=$((NODE_PORT + 2))
UAC_PORT=$((NODE_PORT + 3))
DNS_PORT=$((NODE_PORT + 4))
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/p2psip-routing-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"

require_sipp
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] ||
    die "dnsmasq not found (Debian: apt-get install dnsmasq-base)"
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
raise_file_limit
ensure_binary
check_ports_free NODE_PORT "$NODE_PORT" "$REG_PORT" "$UAS_PORT" "$UAC_PORT" "$DNS_PORT"

# ---- the name server -------------------------------------------------------------------
DNS_LOG="$BENCH_DIR/dnsmasq.log"
log "starting dnsmasq on 127.0.0.1:$DNS_PORT"
"$DNSMASQ" --keep-in-foreground --port="$DNS_PORT" --listen-address=127.0.0.1 \
    --bind-interfaces --no-resolv --no-hosts --no-poll --log-queries \
    --log-facility="$DNS_LOG" --pid-file= \
    --naptr-record="5.4.3.2.1.3.4.e164.arpa,100,10,u,E2U+sip,!^\\+43(.*)\$!sip:\\1@itsp-a.example!" \
    --naptr-record="itsp-a.example,10,10,s,SIP+D2U,,_sip._udp.itsp-a.example" \
    --srv-host="_sip._udp.itsp-a.example,sip0.itsp-a.example,$UAS_PORT,10,10" \
    --host-record="sip0.itsp-a.example,127.0.0.1" --local-ttl=3600 \
    </dev/null >"$BENCH_DIR/dnsmasq.stdout" 2>&1 &
DNS_PID=$!
NODE_PIDS+=("$DNS_PID")
sleep 0.5
kill -0 "$DNS_PID" 2>/dev/null || die "dnsmasq exited: $(tail -5 "$BENCH_DIR/dnsmasq.stdout")"
dns_queries() { grep -c 'query\[' "$DNS_LOG" 2>/dev/null || echo 0; }

# ---- the node --------------------------------------------------------------------------
log "starting the node on 127.0.0.1:$NODE_PORT (logs in $BENCH_DIR)"
NODE_ARGS="${NODE_ARGS:-} --no-overlay --trusted-peer 127.0.0.1"
NODE_CONFIG_EXTRA=$(printf '[routing]\ndns_servers = ["127.0.0.1:%s"]' "$DNS_PORT")
launch_node node "$NODE_PORT"
NODE_PID=$LAST_PID
wait_node node "$NODE_PID" test -s "$BENCH_DIR/node/node.json" ||
    die "the node did not write node.json within 20 s"

log "starting the UAS (provider and bob) on 127.0.0.1:$UAS_PORT"
start_uas "$UAS_PORT"
register_uas "$NODE_PORT" "$REG_PORT" "$UAS_PORT"

# One ENUM call fills the route cache (and shows the path works).
run_sipp "$BENCH_DIR/warm-up" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 \
    -p "$UAC_PORT" -s "$NUMBER" -key domain "$DOMAIN" -m 1 -timeout 20s -timeout_error ||
    die "the warm-up call through ENUM failed (see $BENCH_DIR/warm-up.* and node.stderr)"

# step LABEL SERVICE RATE: one step; prints "ok failed achieved cpu queries rc".
step() {
    local label=$1 service=$2 rate=$3 calls out t0 t1 s0 s1 q0 q1 rc=0
    calls=$((rate * STEP_SECONDS))
    out="$BENCH_DIR/$label-$rate"
    q0=$(dns_queries)
    t0=$(ticks "$NODE_PID")
    s0=$(date +%s.%N)
    run_sipp "$out" "127.0.0.1:$NODE_PORT" -sf "$SCENARIOS/uac_call.xml" -t u1 -p "$UAC_PORT" \
        -s "$service" -key domain "$DOMAIN" -m "$calls" -r "$rate" -l $((rate * 2)) \
        -recv_timeout 5000 -timeout $((STEP_SECONDS * 3 + 20))s -timeout_error || rc=$?
    s1=$(date +%s.%N)
    t1=$(ticks "$NODE_PID")
    q1=$(dns_queries)
    read -r ok failed achieved < <(sipp_result "$out.csv")
    echo "$ok $failed $achieved $(cpu_percent "$t0" "$t1" "$s0" "$s1") $((q1 - q0)) $rc"
}

summary=()
best_local=0
best_enum=0
for rate in $CALL_RATES; do
    calls=$((rate * STEP_SECONDS))
    passed=0
    for kind in local enum; do
        service=bob
        [ "$kind" = enum ] && service=$NUMBER
        read -r ok failed achieved cpu queries rc < <(step "$kind" "$service" "$rate")
        line=$(printf '%-5s target %5d/s: %7d ok, %5d failed, achieved %5d/s, node CPU %4s%%, DNS queries %d, sipp exit %d' \
            "$kind" "$rate" "$ok" "$failed" "$achieved" "$cpu" "$queries" "$rc")
        log "$line"
        summary+=("$line")
        if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]; then
            passed=$((passed + 1))
            if [ "$kind" = local ] && [ "$achieved" -gt "$best_local" ]; then best_local=$achieved; fi
            if [ "$kind" = enum ] && [ "$achieved" -gt "$best_enum" ]; then best_enum=$achieved; fi
        fi
        sleep 2
    done
    if [ "$passed" -lt 2 ] && [ "${KEEP_GOING:-0}" != 1 ]; then
        break
    fi
done

echo
echo "== p2psip routing benchmark ($(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' | sed 's/[.]$//' || true), $("$DNSMASQ" --version | head -1 | cut -d' ' -f1-3), $(nproc) cores, logs in $BENCH_DIR)"
for line in "${summary[@]}"; do
    echo "$line"
done
echo "local calls/s max: $best_local"
echo "ENUM + RFC 3263 calls/s max: $best_enum"
awk -v l="$best_local" -v e="$best_enum" 'BEGIN { if (l > 0) printf "ratio: %.2f\n", e / l }'
