#!/usr/bin/env bash
# Steering benchmark (issue 3): xnic rx behind steer v2 with N rules, with
# M active flows steered by the rules or installed as exact flows, against
# raw xnic rx (catch-all rules only), on one lab with the live-frames
# generator. Median of ROUNDS interleaved rounds; generator on CPU 0,
# receiver on CPU 1, as in `xnic bench`.
#   sudo bench/steering.sh [bin/xnic] [rounds] [seconds]
set -euo pipefail
XNIC=${1:-bin/xnic}; ROUNDS=${2:-3}; SECS=${3:-4}
LAB=xs$(printf '%04x' $((RANDOM % 65536)))
# Labs share their subnets: take the lab slot the tests and xnic bench use.
mkdir -p /run/xnic/labtest
exec 9>/run/xnic/labtest/lock
flock 9
"$XNIC" lab up --name "$LAB" >/dev/null
trap '"$XNIC" lab down --name "$LAB" >/dev/null' EXIT

# once runs one round of a configuration and prints its pps.
once() { # gen_flows rx_args...
  local gflows=$1; shift
  local out; out=$(mktemp)
  taskset -c 1 "$XNIC" rx --iface "${LAB}0" --duration "${SECS}s" --json --quiet "$@" >"$out" 2>"$out.err" &
  local pid=$!
  # xnic rx's window opens after its set-up (10k rules and 100k flows
  # take a while), with its "xnic rx: IFACE ..." line: start the traffic
  # then, as xnic bench does, so no set-up time dilutes the rate.
  local i
  for i in $(seq 600); do
    grep -q "^xnic rx: ${LAB}0" "$out.err" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  taskset -c 0 "$XNIC" gen --lab "$LAB" --flows "$gflows" --duration "$((SECS + 1))s" >/dev/null 2>&1 || true
  wait "$pid"
  tail -1 "$out" | grep -o '"pps":[0-9.e+]*' | cut -d: -f2
  rm -f "$out" "$out.err"
}

# The configurations: label, flows sent, then xnic rx's arguments.
CONFIGS=(
  "raw(catch-all),1-flow|1|"
  "1-rule,1-flow|1|--rules 1"
  "100-rules,1-flow|1|--rules 100"
  "10k-rules,1-flow|1|--rules 10000"
  "10k-rules,1k-flows-sent|1000|--rules 10000"
  "10k-rules,100k-flows-sent|100000|--rules 10000"
  "10k-rules,1k-flows-in-table,1k-sent|1000|--rules 10000 --flows 1000"
  "10k-rules,100k-flows-in-table,1-sent|1|--rules 10000 --flows 100000"
  "10k-rules,100k-flows-in-table,1k-sent|1000|--rules 10000 --flows 100000"
  "10k-rules,100k-flows-in-table,100k-sent|100000|--rules 10000 --flows 100000"
  "raw(catch-all),100k-flows-sent|100000|"
)

# Rounds are interleaved: each round measures every configuration once,
# so a stretch of the host's noise (this VM's can last tens of seconds)
# falls on all of them rather than on the ones measured during it.
VALS=$(mktemp -d)
trap '"$XNIC" lab down --name "$LAB" >/dev/null; rm -rf "$VALS"' EXIT
for r in $(seq "$ROUNDS"); do
  for i in "${!CONFIGS[@]}"; do
    IFS='|' read -r label gflows args <<<"${CONFIGS[$i]}"
    # shellcheck disable=SC2086 # args is a list of flags
    once "$gflows" $args >>"$VALS/$i"
  done
done

{
  for i in "${!CONFIGS[@]}"; do
    IFS='|' read -r label _ _ <<<"${CONFIGS[$i]}"
    sort -g "$VALS/$i" | awk -v l="$label" '{v[NR]=$1} END {printf "%s %.3f\n", l, v[int((NR+1)/2)]/1e6}'
  done
} | awk 'NR==1 {base=$2} {printf "| %s | %.3f | %.2f |\n", $1, $2, $2/base}' | sed '1i | configuration | median Mpps | vs raw |\n|---|---:|---:|'
