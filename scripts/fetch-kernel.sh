#!/usr/bin/env bash
# Fetch a Debian kernel for the SCTP VMs into the testbed cache; idempotent.
#
#   scripts/fetch-kernel.sh [RELEASE]     e.g. 6.1.0-56-amd64, 6.1.0-56, 6.12.117+deb12-amd64,
#                                          or a series (6.12): its newest build in apt
#
# Default: the newest bookworm 6.1.0-N-amd64 apt knows. Uses the generic flavour (the cloud
# flavour lacks 9p). Result: $CACHE/kernels/RELEASE/{vmlinuz,vmlinux,lib/modules/RELEASE/...}
# with modules.dep built by depmod, and prints that directory on stdout (last line).
set -euo pipefail

cache=${TESTBED_CACHE:-/var/cache/testbed}
rel=${1:-}

if [ -z "$rel" ]; then
  rel=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' \
        | awk '{print $1}' | sed -E 's/^linux-image-(.*)-unsigned$/\1/' | sort -V | tail -1)
  [ -n "$rel" ] || { echo "fetch-kernel: no linux-image-6.1.0-*-amd64 in apt (run apt-get update)" >&2; exit 1; }
fi
if [[ "$rel" =~ ^[0-9]+\.[0-9]+$ ]]; then  # a series, e.g. 6.12: its newest build in apt
  series=${rel//./\\.}
  rel=$(apt-cache search --names-only "^linux-image-${series}[.][0-9.]+(-[0-9]+|[+]deb[0-9]+)?-amd64-unsigned\$" \
        | awk '{print $1}' | sed -E 's/^linux-image-(.*)-unsigned$/\1/' | sort -V | tail -1)
  [ -n "$rel" ] || { echo "fetch-kernel: no linux-image-$1.* in apt (bookworm-backports for 6.12?)" >&2; exit 1; }
fi
case "$rel" in *-amd64) ;; *) rel="$rel-amd64" ;; esac
case "$rel" in *cloud*) echo "fetch-kernel: the cloud flavour lacks 9p; use the generic amd64 one" >&2; exit 1 ;; esac

dest="$cache/kernels/$rel"
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-kernel.XXXXXX")
chmod 755 "$work"  # apt-get download hands the file to the _apt user
trap 'rm -rf "$work"' EXIT
cd "$work"

pkg=""
for cand in "linux-image-$rel-unsigned" "linux-image-$rel"; do
  if apt-cache show "$cand" >/dev/null 2>&1; then pkg=$cand; break; fi
done
[ -n "$pkg" ] || { echo "fetch-kernel: no package linux-image-$rel[-unsigned] in apt (apt-get update? bookworm-backports for 6.12?)" >&2; exit 1; }

echo "fetch-kernel: downloading $pkg and kmod" >&2
apt-get download -q "$pkg" kmod >&2
mkdir -p root
for deb in ./*.deb; do dpkg-deb -x "$deb" root; done

vmlinuz="root/boot/vmlinuz-$rel"
[ -f "$vmlinuz" ] || { echo "fetch-kernel: $pkg has no boot/vmlinuz-$rel" >&2; exit 1; }

# depmod from the extracted kmod when the host has none (the host kernel has no modules).
depmod=$(command -v depmod || true)
[ -n "$depmod" ] || depmod="$work/root/sbin/depmod"
[ -x "$depmod" ] || depmod="$work/root/bin/kmod"
if [ "$(basename "$depmod")" = kmod ]; then
  ln -sf "$depmod" "$work/depmod"; depmod="$work/depmod"
fi

stage="$dest.partial"
rm -rf "$stage"
mkdir -p "$stage/lib/modules"
mv "root/lib/modules/$rel" "$stage/lib/modules/"
cp "$vmlinuz" "$stage/vmlinuz"
cp "root/boot/config-$rel" "$stage/config" 2>/dev/null || true
"$depmod" -b "$stage" "$rel"

# Uncompressed ELF vmlinux for PVH boot (QEMU -kernel with an ELF that has the PVH note boots
# ~2 s faster than the bzImage under TCG). Debian 6.1 compresses with xz, 6.12 with zstd: find
# the stream in the bzImage and unpack it (xz in python, zstd with the zstd tool if present).
python3 - "$stage/vmlinuz" "$stage/vmlinux" <<'PY' || echo "fetch-kernel: no vmlinux (PVH) extracted; bzImage boot only" >&2
import lzma, shutil, subprocess, sys
data = open(sys.argv[1], "rb").read()

def unxz(blob):
    return lzma.LZMADecompressor().decompress(blob)

def unzstd(blob):
    if not shutil.which("zstd"):
        raise ValueError("no zstd tool")
    r = subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True)
    return r.stdout  # trailing garbage after the frame makes zstd exit 1: keep what it wrote

for magic, unpack in ((b"\xfd7zXZ\x00", unxz), (b"\x28\xb5\x2f\xfd", unzstd)):
    off = data.find(magic)
    while off >= 0:
        try:
            out = unpack(data[off:])
            if out[:4] == b"\x7fELF":
                open(sys.argv[2], "wb").write(out)
                sys.exit(0)
        except (lzma.LZMAError, ValueError):
            pass
        off = data.find(magic, off + 1)
sys.exit(1)
PY

touch "$stage/.complete"
rm -rf "$dest"
mv "$stage" "$dest"
echo "$dest"
