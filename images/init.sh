#!/bin/busybox sh
# PID 1 of a testbed SCTP VM (packed into the initramfs by testbed/sctp/initramfs.py).
#
# Loads the modules listed in /modules/order, mounts the host's / read-only over 9p, the
# writable shares at their host paths, tmpfs on /tmp /run /var/tmp, renames NICs by MAC, then
# chroots into the host root and runs the guest agent. Parameters come on the kernel
# command line as tb.*=...; no fixed sleeps anywhere.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "tb-init: $(cut -d" " -f1 /proc/uptime) s: init started"

for m in $(cat /modules/order); do
  insmod "/modules/$m" 2>/dev/null || echo "tb-init: insmod $m failed (ignored)"
done

echo "tb-init: $(cut -d" " -f1 /proc/uptime) s: modules loaded"
TB_IF="" TB_RW="" TB_PY="" TB_PP="" TB_HOST="vm" TB_CWD="/"
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    tb.if=*) TB_IF="${arg#tb.if=}" ;;
    tb.rw=*) TB_RW="${arg#tb.rw=}" ;;
    tb.py=*) TB_PY="${arg#tb.py=}" ;;
    tb.pp=*) TB_PP="${arg#tb.pp=}" ;;
    tb.host=*) TB_HOST="${arg#tb.host=}" ;;
  esac
done

fail() { echo "tb-init: $*"; poweroff -f; }

mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 root /newroot \
  || fail "cannot mount the host root over 9p"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
for d in /tmp /run /var/tmp /dev/shm; do mount -t tmpfs -o mode=1777 tmpfs "/newroot$d"; done
# writable shares: tag:path,tag:path (cache=none so the host sees writes at once)
for pair in $(echo "$TB_RW" | tr ',' ' '); do
  mkdir -p "/newroot${pair#*:}" 2>/dev/null  # under a tmpfs (e.g. /tmp) it must be made
  mount -t 9p -o trans=virtio,version=9p2000.L,rw,cache=none,msize=512000 \
    "${pair%%:*}" "/newroot${pair#*:}" || fail "cannot mount share ${pair}"
done

# NICs: mac@name,mac@name -> rename the NIC with that MAC
for pair in $(echo "$TB_IF" | tr ',' ' '); do
  mac="${pair%%@*}" name="${pair#*@}"
  for dev in /sys/class/net/*; do
    [ "$(cat "$dev/address")" = "$mac" ] && ip link set dev "${dev##*/}" name "$name"
  done
done
echo "tb-init: $(cut -d" " -f1 /proc/uptime) s: modules and mounts done"
ip link set dev lo up
hostname "$TB_HOST"

port=""
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = tb.agent ] && port="/dev/${p##*/}"
done
[ -n "$port" ] || fail "no virtio-serial port tb.agent"

echo "tb-init: $(cut -d" " -f1 /proc/uptime) s: starting agent on $port"
chroot /newroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root PYTHONPATH="$TB_PP" PYTHONDONTWRITEBYTECODE=1 \
  "$TB_PY" -S -m testbed.runtimes.guest_agent --port "$port"
echo "tb-init: agent exited ($?)"
poweroff -f
