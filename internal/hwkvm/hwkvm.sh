#!/usr/bin/env bash
# hwkvm.sh - test emuckpt on hardware-style KVM on a machine that has none.
#
# The machines this project runs on have only PVM, a software KVM. The
# other path (hardware virtualization: the syscall trampoline entered at
# CPL0, rdtsc trapped through CR4.TSD, nested paging) is exercised here by
# booting a Debian kernel in QEMU with pure emulation (TCG) and a virtual
# AMD EPYC CPU that has SVM and nested paging, loading kvm_amd in that
# guest, and running emuckpt and its test binaries there on /dev/kvm.
#
# Usage (as root on Debian, from anywhere in the repository):
#
#   go run ./internal/hwkvm [quick|full|all]
#   bash internal/hwkvm/hwkvm.sh [quick|full|all]
#
#   quick  CLI runs of the test programs, some compared with the same
#          program run natively in the guest, the checkpoint/restore round
#          trip, deterministic rdtsc. A few minutes. .ci/run runs this.
#   full   the test binaries of every package whose tests need KVM, with
#          -test.short (see below). About 8 minutes on 2 cores.
#   all    both (the default).
#
# It installs what is missing (qemu-system-x86, busybox-static, cpio,
# musl-tools, make) with apt-get, downloads the Debian kernel package that
# linux-image-amd64 points to and unpacks it with dpkg-deb -x (nothing is
# installed into /boot), builds emuckpt and the test binaries with
# CGO_ENABLED=0, and packs them with busybox, the KVM modules and the
# repository's testimages/ and testdata/ directories into an initramfs.
# The files keep their absolute paths, because tests find testimages/
# through the path they were compiled at. The guest's init is
# internal/hwkvm/init.sh.
#
# Progress: every guest step and test result is echoed as it happens, and
# a "still running" line every HWKVM_HEARTBEAT seconds. The exit status is
# 0 only if the guest booted, found /dev/kvm, ran every step and every step
# passed; anything else (no SVM, a step failed, QEMU timed out) is 1, and 2
# is bad usage.
#
# Environment:
#   HWKVM_WORK        work directory, kept between runs (the kernel is
#                     downloaded once); default ${TMPDIR:-/tmp}/emuckpt-hwkvm
#   HWKVM_TIMEOUT     wall-clock limit for QEMU in seconds (default 900 for
#                     quick, 7200 otherwise)
#   HWKVM_PKGS        packages for the full phase (default: those whose
#                     tests use internal/kvmtest)
#   HWKVM_TEST_ARGS   extra arguments for every test binary, e.g.
#                     '-test.run TestHPET' (default: -test.short, which keeps
#                     cmd/emuckpt TestPageTableChurn to 10,000 cycles)
#   HWKVM_CPU HWKVM_MEM  QEMU -cpu (default EPYC,+svm,+npt) and -m (4G)
#   HWKVM_HEARTBEAT   seconds between "still running" lines (default 60)
#
# Output: $HWKVM_WORK/guest.log is the guest's whole serial console;
# $HWKVM_WORK/summary.txt has one line per step.
#
# Known differences from real hardware (see README.md, "The hardware-KVM
# path"): QEMU TCG checks the TSS I/O bitmap only with an available (type
# 9) TSS, so a CPL3 `out` to an allowed port gets #GP there instead of a
# port exit (vmm TestUserPortIOIsReported accepts that on TCG only); the
# guest has one vCPU (with two, L1 hung under multi-threaded TCG); /bin/ls
# in the guest is busybox's, so cmd/emuckpt's "dynamic ELF" case is not
# run there.
set -euo pipefail

PHASE=${1:-all}
case $PHASE in
quick | full | all) ;;
*)
	echo "usage: $0 [quick|full|all]" >&2
	exit 2
	;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${HWKVM_WORK:-${TMPDIR:-/tmp}/emuckpt-hwkvm}
if [ "$PHASE" = quick ]; then TIMEOUT=${HWKVM_TIMEOUT:-900}; else TIMEOUT=${HWKVM_TIMEOUT:-7200}; fi
TEST_ARGS=${HWKVM_TEST_ARGS--test.short}
CPU=${HWKVM_CPU:-EPYC,+svm,+npt}
MEM=${HWKVM_MEM:-4G}
HEARTBEAT=${HWKVM_HEARTBEAT:-60}
T0=$(date +%s)

say() { echo "hwkvm: +$(($(date +%s) - T0))s: $*"; }
die() {
	say "FAIL: $*"
	exit 1
}

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export PATH="$PATH:/usr/local/go/bin"

# ---- 1. host tools -------------------------------------------------------
say "phase $PHASE; repository $REPO; work directory $WORK"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
	need+=(busybox-static) # the initramfs has no libc: busybox must be static
fi
command -v cpio >/dev/null || need+=(cpio)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v make >/dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root, or install them"
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
busybox=$(command -v busybox)
command -v go >/dev/null || die "no go in PATH"

# ---- 2. a Debian kernel with kvm_amd, unpacked ---------------------------
KROOT=$WORK/kernel
if ! ls "$KROOT"/boot/vmlinuz-* >/dev/null 2>&1; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$kpkg" ]; then
		apt-get update -qq
		kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
	fi
	[ -n "$kpkg" ] || die "apt knows no linux-image-amd64"
	say "downloading $kpkg"
	rm -rf "$WORK/deb" "$KROOT.tmp"
	mkdir -p "$WORK/deb"
	# apt's sandbox user cannot write to every work directory: download as
	# the current user.
	(cd "$WORK/deb" && apt-get download -o APT::Sandbox::User="$(id -un)" "$kpkg" >/dev/null)
	dpkg-deb -x "$WORK"/deb/"$kpkg"_*.deb "$KROOT.tmp"
	rm -rf "$WORK/deb"
	mv "$KROOT.tmp" "$KROOT"
fi
VMLINUZ=$(ls "$KROOT"/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KROOT/lib/modules/$KVER
[ -d "$MODDIR" ] || MODDIR=$KROOT/usr/lib/modules/$KVER
say "kernel $KVER"

# modfile NAME prints the module's file; Linux treats - and _ alike.
modfile() {
	find "$MODDIR/kernel" \( -name "$1.ko*" -o -name "${1//_/-}.ko*" -o -name "${1//-/_}.ko*" \) | head -1
}
# unpack FILE prints the module's contents, decompressed.
unpack() {
	case $1 in
	*.xz) xz -dc "$1" ;;
	*.zst) zstd -qdc "$1" ;;
	*.gz) gzip -dc "$1" ;;
	*) cat "$1" ;;
	esac
}
# The package has no modules.dep (depmod makes it on install): follow the
# depends= field of each module's .modinfo, dependencies first.
MODULES=()
addmod() {
	local f deps d m
	for m in "${MODULES[@]}"; do [ "$m" = "$1" ] && return 0; done
	f=$(modfile "$1")
	[ -n "$f" ] || die "kernel $KVER has no module $1"
	deps=$(unpack "$f" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -1)
	for d in ${deps//,/ }; do addmod "$d"; done
	MODULES+=("$1")
}
addmod kvm-amd
say "modules to load: ${MODULES[*]}"

# ---- 3. build ------------------------------------------------------------
say "building emuckpt, the test programs and the test binaries"
BUILD=$WORK/build
rm -rf "$BUILD"
mkdir -p "$BUILD/tests"
make -s -C "$REPO/testimages" >/dev/null
(cd "$REPO" && CGO_ENABLED=0 go build -o "$BUILD/emuckpt" ./cmd/emuckpt)
if [ -n "${HWKVM_PKGS:-}" ]; then
	PKGS=$HWKVM_PKGS
else
	# The packages whose tests ask for KVM through internal/kvmtest.
	PKGS=$(cd "$REPO" && grep -rl --include='*_test.go' 'internal/kvmtest"' . |
		xargs -n1 dirname | sed 's|^\./||' | sort -u | tr '\n' ' ')
fi
if [ "$PHASE" != quick ]; then
	for p in $PKGS; do
		(cd "$REPO" && CGO_ENABLED=0 go test -c -o "$BUILD/tests/${p//\//_}.test" "./$p")
	done
fi

# ---- 4. initramfs ----------------------------------------------------------
say "packing the initramfs"
R=$WORK/initramfs
rm -rf "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,tests,lib/modules} "$R$REPO"
cp "$busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh" # for init's #!/bin/sh; init installs the rest
cp "$BUILD/emuckpt" "$R/bin/emuckpt"
cp "$BUILD"/tests/* "$R/tests/" 2>/dev/null || true
for m in "${MODULES[@]}"; do unpack "$(modfile "$m")" >"$R/lib/modules/$m.ko"; done
# The repository as the tests see it: testimages/, every testdata/, and
# each test package's directory (its working directory).
(cd "$REPO" && { echo testimages; find . -name testdata -type d -not -path './.git/*'; } |
	while read -r d; do mkdir -p "$R$REPO/$d" && cp -a "$d/." "$R$REPO/$d/"; done)
for p in $PKGS; do mkdir -p "$R$REPO/$p"; done
{
	echo "#!/bin/sh"
	echo "REPO='$REPO' PHASE='$PHASE' PKGS='$PKGS' TEST_ARGS='$TEST_ARGS'"
	echo "MODULES='${MODULES[*]}'"
	cat "$HERE/init.sh"
} >"$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initramfs.cpio.gz")
say "initramfs $(du -h "$WORK/initramfs.cpio.gz" | cut -f1)"

# ---- 5. boot ---------------------------------------------------------------
LOG=$WORK/guest.log
rm -f "$LOG" "$LOG.raw"
touch "$LOG.raw"
say "booting QEMU TCG (-cpu $CPU, 1 vCPU, -m $MEM), at most ${TIMEOUT}s"
# While QEMU runs, echo the guest's progress (its step and result lines,
# each test's verdict) and a heartbeat.
show_new() { # show_new FROM TO: the interesting lines FROM..TO of the log
	[ "$2" -ge "$1" ] || return 0
	sed -n "$1,$2p" "$LOG.raw" | tr -d '\r' |
		grep -E '^(HWKVM|--- (PASS|FAIL|SKIP)|panic:|FAIL|ok  |Kernel panic)' | sed 's/^/  guest: /' || true
}
watch_log() {
	local seen=0 n beat
	beat=$(date +%s)
	while sleep 2; do
		n=$(wc -l <"$LOG.raw")
		show_new $((seen + 1)) "$n"
		seen=$n
		echo "$seen" >"$WORK/seen"
		if [ $(($(date +%s) - beat)) -ge "$HEARTBEAT" ]; then
			beat=$(date +%s)
			say "still running; last guest line: $(tail -c 2000 "$LOG.raw" | tr -d '\r' | grep -v '^$' | tail -1 | cut -c1-160)"
		fi
	done
}
echo 0 >"$WORK/seen"
watch_log &
WATCH=$!
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu "$CPU" -smp 1 -m "$MEM" \
	-kernel "$VMLINUZ" -initrd "$WORK/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 loglevel=4 mitigations=off" \
	-display none -serial file:"$LOG.raw" -no-reboot </dev/null >"$WORK/qemu.out" 2>&1
qrc=$?
set -e
kill "$WATCH" 2>/dev/null || true
wait "$WATCH" 2>/dev/null || true
show_new $(($(cat "$WORK/seen") + 1)) "$(wc -l <"$LOG.raw")"
tr -d '\r' <"$LOG.raw" >"$LOG"
grep -v "TCG doesn't support requested feature" "$WORK/qemu.out" || true
say "QEMU exited with status $qrc$([ $qrc = 124 ] && echo ' (timed out)')"

# ---- 6. verdict ------------------------------------------------------------
{
	echo "hwkvm $PHASE: kernel $KVER, cpu $CPU, $(($(date +%s) - T0))s"
	grep -E '^HWKVM (cpu|kvm)' "$LOG" || true
	grep -E '^HWKVM-RESULT' "$LOG" | sed 's/^HWKVM-RESULT /  /' || true
	grep -E '^--- FAIL' "$LOG" | sed 's/^/  /' || true
} >"$WORK/summary.txt"
cat "$WORK/summary.txt"
pass=$(grep -c '^HWKVM-RESULT .* PASS' "$LOG" || true)
fail=$(grep -c '^HWKVM-RESULT .* FAIL' "$LOG" || true)
echo "hwkvm: $pass passed, $fail failed"
grep -q '^HWKVM-END' "$LOG" || die "the guest did not finish (see $LOG)"
[ "$pass" -gt 0 ] || die "the guest ran no step (see $LOG)"
[ "$fail" = 0 ] || die "$fail step(s) failed (see $LOG)"
say "PASS"
