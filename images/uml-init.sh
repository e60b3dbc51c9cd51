#!/bin/sh
# PID 1 of a testbed User-Mode Linux node (started by testbed/runtimes/uml.py as init=).
#
# The root is the host's / over hostfs, read-only. TB_BOOT (kernel command line -> environment)
# names a file of shell assignments the host wrote for this boot; the fstab it names mounts
# proc, sysfs, devpts, tmpfs on /tmp /run /var/tmp /dev/shm and the writable shares at their
# host paths, in one `mount -a` (process starts are what a UML guest pays for). Then one
# modprobe loads every module, one `ip -batch` names the NICs as the lab does, and the guest
# agent serves the console channel. This shell stays PID 1: its `wait` reaps orphans
# re-parented to it, and when the agent exits it powers the machine off (UML then exits).
# No fixed sleeps anywhere.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() {
  up="?"
  [ -r /proc/uptime ] && read -r up _ < /proc/uptime
  echo "tb-init: ${up} s: $*"
}

power_off() {
  say "$*; powering off"
  echo o > /proc/sysrq-trigger
  exec sleep infinity  # PID 1 must outlive the power-off work: its exit would be a panic
}

[ -r "$TB_BOOT" ] || { mount -t proc proc /proc; power_off "no boot file '$TB_BOOT'"; }
. "$TB_BOOT"

mount -a -T "$TB_FSTAB" || power_off "mounting $TB_FSTAB failed"
echo "$TB_HOST" > /proc/sys/kernel/hostname
say "mounted"

# modules: one modprobe for the list (dependencies from the tree's modules.dep); later requests
# from the kernel (request_module) go through the same tree via the wrapper in kernel.modprobe
[ -n "$TB_MODPROBE" ] && echo "$TB_MODPROBE" > /proc/sys/kernel/modprobe
# shellcheck disable=SC2086 # a list on purpose
modprobe -d "$TB_MODROOT" -S "$TB_RELEASE" -a $TB_MODULES || say "modprobe failed for some of: $TB_MODULES"
say "modules loaded"

ip -batch "$TB_IPBATCH" || say "ip -batch $TB_IPBATCH failed"

# writable views of host directories (a lab machine's /etc, /var/lib): an overlay each, its
# changes on tmpfs (needs the overlay module, loaded above)
for d in $TB_OVERLAYS; do
  o="/run/tb-overlay$d"
  mkdir -p "$o/upper" "$o/work" &&
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$o/upper,workdir=$o/work" "$d" ||
    power_off "overlay on $d failed"
done

say "starting the agent on $TB_PORT"
env -i PATH="$PATH" HOME=/root PYTHONPATH="$TB_PYTHONPATH" PYTHONDONTWRITEBYTECODE=1 \
  "$TB_PYTHON" -S -m testbed.runtimes.guest_agent --port "$TB_PORT" --tty &
wait
power_off "agent exited"
