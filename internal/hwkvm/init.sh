# init.sh - the init of the guest that internal/hwkvm/hwkvm.sh boots.
#
# hwkvm.sh prepends "#!/bin/sh" and the settings REPO, PHASE, PKGS,
# TEST_ARGS and MODULES. This runs under busybox sh as PID 1: it loads
# kvm_amd, runs the steps of the phase and powers off. Every step prints
#   HWKVM-STEP NAME: COMMAND
#   ... its output ...
#   HWKVM-RESULT NAME rc=N PASS|FAIL secs=S
# and the host side counts the RESULT lines; HWKVM-END marks a finished
# run. A missing /dev/kvm is a failed step, not a skip.

/bin/busybox --install -s /bin
# Tests expect a dynamically linked /bin/ls when there is one; busybox's is
# static, so there is none.
rm -f /bin/ls
export PATH=/bin HOME=/ TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
chmod 1777 /tmp
exec </dev/null 2>&1

up() { cut -d' ' -f1 /proc/uptime; }
echo "HWKVM-BEGIN uptime=$(up)"
echo "HWKVM cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) svm=$(grep -c -m1 -w svm /proc/cpuinfo) npt=$(grep -c -m1 -w npt /proc/cpuinfo)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko || echo "HWKVM insmod $m failed"
done
echo "HWKVM kvm_amd: loaded=$([ -d /sys/module/kvm_amd ] && echo yes || echo no) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"

# step NAME WANT CMD...: run CMD; it passes when its status is WANT.
# The helpers below use local variables only: step's must survive them.
step() {
	local name=$1 want=$2 start rc verdict=FAIL
	shift 2
	echo "HWKVM-STEP $name: $*"
	start=$(up)
	"$@"
	rc=$?
	[ "$rc" = "$want" ] && verdict=PASS
	echo "HWKVM-RESULT $name rc=$rc $verdict secs=$(awk "BEGIN {print $(up) - $start}")"
}

IMG=$REPO/testimages/bin

# What testimages/bin/rdtsc prints under --deterministic on any KVM.
RDTSC_WANT='rdtsc: 3000 delta 1000
rdtscp: 7000 delta 1000 aux 0
site_delta: 1000
imm_rdtsc: 0x90310f90
imm_rdtscp: 0xf9010f90
jit_imm: 0x90310f90
jit_rdtsc: 13000 delta 1000
jit_straddle: 15000 delta 1000
smc_rdtsc: 19000 delta 1000
smc_imm: 0x90310f90
smc_rdtsc_again: 21000 delta 1000
ok'

# output_is WANT CMD...: CMD exits 0 and prints exactly WANT.
output_is() {
	local expect=$1 out rc
	shift
	out=$("$@")
	rc=$?
	echo "$out"
	[ "$rc" = 0 ] && [ "$out" = "$expect" ]
}

# like_native PROG ARGS...: emuckpt runs PROG as this Linux does: the same
# output and exit status.
like_native() {
	local prog=$1 n e
	shift
	"$IMG/$prog" "$@" >/tmp/native.out 2>&1
	n=$?
	emuckpt run "$IMG/$prog" "$@" >/tmp/emu.out 2>&1
	e=$?
	cat /tmp/emu.out
	echo "status: emuckpt $e, native $n"
	[ "$e" = "$n" ] && cmp /tmp/native.out /tmp/emu.out
}

# twice_identical ARGS...: two runs of emuckpt run --deterministic print
# the same bytes (rdtsc is trapped through CR4.TSD on hardware KVM).
twice_identical() {
	emuckpt run --deterministic --seed 3 "$@" >/tmp/d1.out 2>&1 || return 1
	emuckpt run --deterministic --seed 3 "$@" >/tmp/d2.out 2>&1 || return 1
	cat /tmp/d1.out
	cmp /tmp/d1.out /tmp/d2.out
}

# round_trip: checkpoint devckpt (it checkpoints itself), inspect the
# image, restore it under both device-state policies.
round_trip() {
	local policy out
	rm -f /tmp/dev.img
	emuckpt run --checkpoint-to /tmp/dev.img "$IMG/devckpt" || return 1
	emuckpt inspect /tmp/dev.img || return 1
	for policy in fresh preserve; do
		out=$(emuckpt restore --device-state=$policy /tmp/dev.img) || return 1
		echo "$out"
		echo "$out" | grep -q 'side: restored' || return 1
	done
}

# split_run TRIGGER PROG [FLAGS...]: a run stopped by --checkpoint-at
# TRIGGER plus its restore print what an uninterrupted run prints; FLAGS
# go to the three runs.
split_run() {
	local trigger=$1 prog=$2 whole first second
	shift 2
	whole=$(emuckpt run "$@" "$IMG/$prog") || return 1
	rm -f /tmp/split.img
	first=$(emuckpt run "$@" --checkpoint-to /tmp/split.img --checkpoint-at "$trigger" "$IMG/$prog") || return 1
	second=$(emuckpt restore --device-state=preserve "$@" /tmp/split.img) || return 1
	echo "$first"
	echo "--- restored:"
	echo "$second"
	# (a newline between the two only when the first part printed any)
	[ "$first${first:+
}$second" = "$whole" ]
}

# gotest PKG: the package's test binary, in the package's directory.
gotest() {
	local rc
	cd "$REPO/$1" && EMUCKPT_REQUIRE_KVM=1 /tests/$(echo "$1" | tr / _).test -test.v -test.timeout 60m $TEST_ARGS
	rc=$?
	cd /
	return $rc
}

step kvm 0 test -c /dev/kvm
if [ -c /dev/kvm ] && [ "$PHASE" != full ]; then
	step hello 0 output_is "hello, world" emuckpt run "$IMG/hello"
	step hello-pie 0 output_is "hello, world" emuckpt run "$IMG/hello-pie"
	step exit-status 7 emuckpt run "$IMG/exitcode" 7
	step segv 139 emuckpt run "$IMG/segv"
	step timeout 124 emuckpt run --timeout 1s "$IMG/spin"
	for p in mmap efault fdops sighandler bigio; do
		step "$p" 0 like_native "$p"
	done
	# Not compared: natively under this init (PID 1's children) sigs
	# finds SIGUSR1 blocked or pending and exits 2.
	step sigs 0 emuckpt run "$IMG/sigs"
	step malloc 0 emuckpt run "$IMG/malloc"
	step pgtable_churn 0 emuckpt run --mem 64M "$IMG/pgtable_churn" 10000
	step dettime-deterministic 0 twice_identical "$IMG/dettime"
	step rdtsc-deterministic 0 twice_identical "$IMG/rdtsc"
	# The same bytes as on PVM, where rdtsc is patched rather than
	# trapped through CR4.TSD (cmd/emuckpt TestRdtscDeterministic).
	step rdtsc-like-pvm 0 output_is "$RDTSC_WANT" emuckpt run --deterministic --seed 3 "$IMG/rdtsc"
	step hpet_mmap 0 emuckpt run "$IMG/hpet_mmap"
	step hpet_irq 0 emuckpt run --deterministic "$IMG/hpet_irq"
	step bsr_barrier 0 emuckpt run "$IMG/bsr_barrier"
	step demo 0 emuckpt demo
	step checkpoint-round-trip 0 round_trip
	step checkpoint-at-device 0 split_run device:5 bsr_barrier
	step checkpoint-at-syscall 0 split_run syscall:40 sighandler
	# Several tasks on the vCPU: contexts switched on hardware KVM's
	# sync registers and XSAVE, address spaces switched through CR3.
	step threads 0 like_native threads
	step procs 0 emuckpt run "$IMG/procs"
	step devtasks 0 emuckpt run "$IMG/devtasks"
	step tasks-deterministic 0 twice_identical "$IMG/treeckpt"
	step checkpoint-tree 0 split_run syscall:40 treeckpt
	step checkpoint-tree-late 0 split_run syscall:90 treeckpt
	# Two vCPUs on the one CPU QEMU gives: per-vCPU IDT, TSS and stubs,
	# page-table changes shot down across vCPUs (hardware TLBs are per
	# vCPU, unlike PVM's shared shadow), stop-all for a checkpoint.
	step smp-stale 0 output_is "rounds=40 faults=40 stale=0
ok" emuckpt run --cpus 2 "$IMG/smpstress" 40
	step smp-cpus 0 output_is "cpus=2
ok" emuckpt run --cpus 2 "$IMG/cpus"
	step smp-threads 0 emuckpt run --cpus 2 "$IMG/threads"
	step smp-checkpoint-tree 0 split_run syscall:60 treeckpt --cpus 2
fi
if [ -c /dev/kvm ] && [ "$PHASE" != quick ]; then
	for p in $PKGS; do
		step "test:$p" 0 gotest "$p"
	done
fi
echo "HWKVM-END uptime=$(up)"
sync
poweroff -f
