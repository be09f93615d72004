// Package kvmtest decides whether tests that need /dev/kvm run, skip or
// fail. With EMUCKPT_REQUIRE_KVM=1 (set by .ci/run) a machine without a
// usable /dev/kvm fails the test; otherwise the test is skipped and says why.
package kvmtest
