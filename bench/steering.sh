#!/usr/bin/env bash
# Steering benchmark (issue 3): xnic rx behind steer v2 with N rules, with
# M active flows steered by the rules or installed as exact flows, against
# raw xnic rx (catch-all rules only), on one lab with the live-frames
# generator. Median of ROUNDS rounds; generator on CPU 0,
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

measure() { # label gen_flows rx_args...
  local label=$1 gflows=$2; shift 2
  local vals=()
  for r in $(seq "$ROUNDS"); do
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
    vals+=("$(tail -1 "$out" | grep -o '"pps":[0-9.e+]*' | cut -d: -f2)")
    rm -f "$out" "$out.err"
  done
  printf '%s\n' "${vals[@]}" | sort -g | awk -v l="$label" '{v[NR]=$1} END {printf "%s %.3f\n", l, v[int((NR+1)/2)]/1e6}'
}

{
  measure "raw(catch-all),1-flow" 1
  measure "1-rule,1-flow" 1 --rules 1
  measure "100-rules,1-flow" 1 --rules 100
  measure "10k-rules,1-flow" 1 --rules 10000
  measure "10k-rules,1k-flows-sent" 1000 --rules 10000
  measure "10k-rules,100k-flows-sent" 100000 --rules 10000
  measure "10k-rules,1k-flows-in-table,1k-sent" 1000 --rules 10000 --flows 1000
  measure "10k-rules,100k-flows-in-table,100k-sent" 100000 --rules 10000 --flows 100000
  measure "raw(catch-all),100k-flows-sent" 100000
} | awk 'NR==1 {base=$2} {printf "| %s | %.3f | %.2f |\n", $1, $2, $2/base}' | sed '1i | configuration | median Mpps | vs raw |\n|---|---:|---:|'
