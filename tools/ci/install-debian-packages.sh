#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, only when something is missing.
set -euo pipefail
declare -A pkg_for=(
  [nats-server]=nats-server
  [qemu-img]=qemu-utils
  [qemu-nbd]=qemu-utils
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-storage-daemon]=qemu-system-common
  [nbdinfo]=libnbd-bin
  [nbdcopy]=libnbd-bin
  [qemu-io]=qemu-utils
  [openssl]=openssl
  [restic]=restic
  [borg]=borgbackup
  [rsyslogd]=rsyslog
  [prometheus]=prometheus
  [chromium]=chromium
  [sshd]=openssh-server
  [systemd-analyze]=systemd
)
missing=()
for bin in "${!pkg_for[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${pkg_for[$bin]}")
done
# Packages that ship only a plug-in, no binary: found by a file pattern instead.
declare -A pkg_for_file=(
  ['/usr/lib/*/rsyslog/lmnsd_gtls.so']=rsyslog-gnutls
)
for pattern in "${!pkg_for_file[@]}"; do
  compgen -G "$pattern" >/dev/null || missing+=("${pkg_for_file[$pattern]}")
done
# Packages checked by name (no distinctive binary, or one another package also ships):
# the test guest (kernel, static busybox, guest agent), libvirt, libguestfs, file systems for
# file-level restore (unzip checks the zip downloads), Chromium for the console's browser tests, and
# Go with govmomi's sources, from which the VMware tests build the vCenter simulator
# (libs/testing/vcsim/main.go, GOPATH=/usr/share/gocode GO111MODULE=off go build).
for pkg in golang-go golang-github-vmware-govmomi-dev linux-image-amd64 busybox-static qemu-guest-agent libvirt-daemon-system libvirt-clients \
  libguestfs-tools xfsprogs dosfstools mtools gdisk e2fsprogs cryptsetup-bin unzip chromium; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then echo "all Debian packages present"; exit 0; fi
mapfile -t unique < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing: ${unique[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${unique[@]}"
