#!/usr/bin/env bash
# Fetches Debian's kernel package and builds the initramfs the kernel tests boot under QEMU
# (docs/kernel-tests.md). Nothing is installed: the .deb is unpacked with dpkg-deb -x into the
# cache dir. Idempotent: prints the cache dir and exits at once when kernel and initramfs exist.
#   usage: test/kernel/prepare.sh [CACHE_DIR]
# Needs: apt-get (download only), dpkg-deb, busybox (static: it is copied into the guest), gzip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:-${SANBOX_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sanbox/kernel}}"
mkdir -p "$cache"
cd "$cache"
# The initramfs depends on this script and the guest's scripts: rebuild it when either changed.
stamp="$(cat "$here/prepare.sh" "$here/init" "$here/ocfs2_hb_ctl" | sha256sum | cut -c1-16)"
if [ -f vmlinuz ] && [ -f "initramfs-$stamp.cpio.gz" ]; then
  ln -sf "initramfs-$stamp.cpio.gz" initramfs.cpio.gz
  echo "$cache"; exit 0
fi

if [ ! -f vmlinuz ]; then
  # linux-image-amd64 is a metapackage: its dependency names the concrete 6.1 kernel package.
  concrete() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1/ {print $2; exit}'; }
  pkg="$(concrete)"
  [ -n "$pkg" ] || { apt-get update -qq >&2 || true; pkg="$(concrete)"; }
  [ -n "$pkg" ] || { echo "prepare: no linux-image-6.1*-amd64 candidate (apt-get update?)" >&2; exit 1; }
  rm -rf root ./*.deb
  apt-get download "$pkg" >&2 2>/dev/null || apt-get download "$pkg" >&2
  dpkg-deb -x ./"$pkg"_*.deb root
  rm -f ./*.deb
  ver="$(ls root/lib/modules | head -1)"
  # The package carries no modules.dep (postinst runs depmod); busybox's depmod writes it.
  busybox depmod -b "$cache/root" "$ver"
  cp "root/boot/vmlinuz-$ver" vmlinuz.tmp && mv vmlinuz.tmp vmlinuz
  echo "$ver" > kernel-version
fi
ver="$(cat kernel-version)"
mods="$cache/root/lib/modules/$ver"

# The modules the guest loads, then everything they depend on (modules.dep lists the closure).
want="ocfs2 ocfs2_stack_o2cb ocfs2_dlm ocfs2_nodemanager jbd2 configfs virtio_blk virtio_pci"
files=""
for m in $want; do
  line="$(grep -E "(^|/)$m\.ko(\.xz)?:" "$mods/modules.dep")" || { echo "prepare: module $m not in $ver" >&2; exit 1; }
  files="$files ${line%%:*} ${line#*:}"
done

rm -rf initrd && mkdir -p initrd/bin initrd/sbin initrd/proc initrd/sys initrd/dev initrd/mnt initrd/tmp "initrd/lib/modules/$ver"
cp "$(command -v busybox)" initrd/bin/busybox
# A dynamically linked busybox would need its libraries in the guest: insist on the static one.
if file_out="$(LC_ALL=C readelf -d initrd/bin/busybox 2>/dev/null)" && grep -q NEEDED <<<"$file_out"; then
  echo "prepare: busybox is dynamically linked; install busybox-static" >&2; exit 1
fi
for f in $(tr ' ' '\n' <<<"$files" | sort -u); do
  mkdir -p "initrd/lib/modules/$ver/$(dirname "$f")"
  cp "$mods/$f" "initrd/lib/modules/$ver/$f"
done
# Only the packed modules: busybox modprobe reads modules.dep (and the kernel's request_module
# runs /sbin/modprobe, e.g. for ocfs2_stack_o2cb).
busybox depmod -b "$cache/initrd" "$ver"
cp "$here/init" initrd/init && chmod 755 initrd/init
cp "$here/ocfs2_hb_ctl" initrd/sbin/ocfs2_hb_ctl && chmod 755 initrd/sbin/ocfs2_hb_ctl
ln -sf busybox initrd/bin/sh
ln -sf ../bin/busybox initrd/sbin/modprobe
rm -f initramfs-*.cpio.gz
(cd initrd && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "initramfs-$stamp.cpio.gz.tmp"
mv "initramfs-$stamp.cpio.gz.tmp" "initramfs-$stamp.cpio.gz"
ln -sf "initramfs-$stamp.cpio.gz" initramfs.cpio.gz
rm -rf initrd
echo "$cache"
