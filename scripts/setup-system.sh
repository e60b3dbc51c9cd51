#!/usr/bin/env bash
# Idempotent system set-up for testbed: Debian packages (BIND >= 9.20 from bookworm-backports,
# docker.io and debootstrap for the docker backend, the SSH client for `testbed deploy`,
# ngtcp2's HTTP/3 examples gtlsclient and gtlsserver as the second QUIC stack),
# nothing else. Called by `make setup`; safe
# to run again. Needs root. It changes no firewall rule: Debian's docker.io units are left
# disabled (the stock dockerd adds iptables rules and a bridge); the docker backend starts its
# own dockerd without either when no engine answers.
set -euo pipefail

APT_PACKAGES=(
  iproute2 procps psmisc kmod tcpdump bridge-utils mininet iputils-ping
  isc-dhcp-server isc-dhcp-client radvd ndisc6 nftables
  qemu-system-x86 qemu-utils busybox-static cpio xz-utils zstd tshark user-mode-linux dhcpcd-base
  libusrsctp2
  ngtcp2-client ngtcp2-server
  python3 python3-venv python3-pip
  docker.io debootstrap tar
  openssh-client
  stress-ng
)
BIND_PACKAGES=(bind9 bind9-utils bind9-dnsutils)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# The installed version of every package above, beside the lab state (testbed.host.packages
# reads it; verdicts name the versions a run used). `--record` writes only this.
record=/var/lib/testbed/packages.txt
record_versions() {
  mkdir -p "$(dirname "$record")"
  dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Abbrev}\n' \
    "${APT_PACKAGES[@]}" "${BIND_PACKAGES[@]}" > "$record.tmp" 2>/dev/null || true
  mv "$record.tmp" "$record"
}
if [ "${1:-}" = --record ]; then
  record_versions
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

backports=/etc/apt/sources.list.d/testbed-backports.list
if [ "$codename" = bookworm ] && [ ! -f "$backports" ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$backports"
  rm -f /var/lib/apt/testbed-updated
fi

missing=()
for p in "${APT_PACKAGES[@]}" "${BIND_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
named_ok=0
if command -v named >/dev/null; then
  v=$(named -v | sed -E 's/^BIND ([0-9]+)\.([0-9]+).*/\1 \2/')
  set -- $v
  [ "$1" -gt 9 ] || { [ "$1" -eq 9 ] && [ "$2" -ge 20 ]; } && named_ok=1
fi

if [ ${#missing[@]} -gt 0 ] || [ $named_ok -eq 0 ]; then
  apt-get update -q
  # Debian's own units must not start daemons on the host: the lab runs them in namespaces.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
  if [ "$codename" = bookworm ]; then
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${BIND_PACKAGES[@]}"
  else
    apt-get install -y -q --no-install-recommends "${BIND_PACKAGES[@]}"
  fi
  # Host copies of the services stay off; the lab starts its own per namespace.
  for unit in named isc-dhcp-server radvd ngtcp2d; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
fi
# The stock Docker daemon (and its containerd) stays off; a dockerd that already runs is the
# user's and is used as it is. A daemon this script's install did not start has no firewall rule
# to undo.
if ! { [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null; }; then
  for unit in docker.service docker.socket containerd.service; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
  done
  for svc in docker containerd; do
    [ -e "/etc/init.d/$svc" ] && update-rc.d "$svc" disable >/dev/null 2>&1 || true
  done
fi
record_versions
echo "setup: system packages ready ($(named -v)); versions in $record"
