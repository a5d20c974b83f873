#!/usr/bin/env bash
# Provision a Debian 12 / Ubuntu 24.04 machine for xnic: toolchain, BPF tooling,
# bpffs and the memlock limit. Idempotent: every step checks before it acts, so
# `make demo`, `make test` and CI can all call it on every run.
set -euo pipefail

GO_VERSION="${GO_VERSION:-1.26.8}"
log() { printf 'provision: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "provision: must run as root (try: sudo bash vagrant/provision.sh)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# systemd: systemd-analyze, which checks deploy/xnic.service.
pkgs=(clang llvm libbpf-dev libxdp-dev bpftool ethtool iproute2 iputils-ping tcpdump iperf3 make gcc libc6-dev pkg-config curl ca-certificates systemd)
# bpftool lives in linux-tools on Ubuntu; on Debian it is its own package.
if grep -qi ubuntu /etc/os-release 2>/dev/null; then
  pkgs=("${pkgs[@]/bpftool/linux-tools-common}")
  pkgs+=("linux-tools-$(uname -r)")
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  # iperf3 asks whether to start a daemon; answer no.
  echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections
  # linux-tools-$(uname -r) may not exist for custom kernels: retry without it.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    apt-get install -y -qq --no-install-recommends "${missing[@]/linux-tools-$(uname -r)/}"
else
  log "packages present"
fi

# Debian puts asm/types.h under the multiarch dir; clang -target bpf needs it.
if [ ! -e /usr/include/asm ] && [ -d "/usr/include/$(uname -m)-linux-gnu/asm" ]; then
  log "asm headers are under /usr/include/$(uname -m)-linux-gnu (bpf2go passes -I for that)"
fi

# Go, if absent or older than the go line of go.mod (a go command older than
# that would try to fetch a newer toolchain on every build). GOTOOLCHAIN=local:
# the version of the go command itself, not of a toolchain it would switch to.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
want_go=$(awk '$1 == "go" { print $2; exit }' "$root/go.mod")
have_go=""
for g in go /usr/local/go/bin/go; do
  if command -v "$g" >/dev/null 2>&1; then
    have_go=$(cd / && GOTOOLCHAIN=local "$g" env GOVERSION 2>/dev/null | sed 's/^go//; s/[ -].*//')
    break
  fi
done
need_go=1
if [ -n "$have_go" ] && [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -n1)" = "$want_go" ]; then
  need_go=0
fi
if [ $need_go -eq 1 ]; then
  arch=$(dpkg --print-architecture)
  log "installing Go ${GO_VERSION}"
  curl -fsSL "https://go.dev/dl/go${GO_VERSION}.linux-${arch}.tar.gz" -o /tmp/go.tgz
  rm -rf /usr/local/go && tar -C /usr/local -xzf /tmp/go.tgz && rm -f /tmp/go.tgz
  ln -sf /usr/local/go/bin/go /usr/local/bin/go
  ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt
else
  log "go ${have_go} present (go.mod wants ${want_go})"
fi

# bpffs, for pinned maps.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs"
  mount -t bpf bpf /sys/fs/bpf
fi

# memlock: BPF memory is charged to the memory cgroup since 5.11 and UMEM
# registration is exempt with CAP_IPC_LOCK, so a failure here is only a warning
# (root without CAP_SYS_RESOURCE cannot raise the hard limit).
if [ -d /etc/security/limits.d ] && [ ! -f /etc/security/limits.d/90-xnic-memlock.conf ]; then
  printf '* soft memlock unlimited\n* hard memlock unlimited\nroot soft memlock unlimited\nroot hard memlock unlimited\n' \
    > /etc/security/limits.d/90-xnic-memlock.conf
fi
ulimit -l unlimited 2>/dev/null || log "warning: cannot raise memlock in this shell (no CAP_SYS_RESOURCE); xnic copes"

log "kernel $(uname -r); done"
