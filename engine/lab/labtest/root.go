// Package labtest holds the helpers that privileged tests share: the root check
// and veth labs that tear themselves down through t.Cleanup.
package labtest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run under CI (CI=true), where a privileged
// test must run and never skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips a test that needs root (BPF, AF_XDP, netns), naming why.
// Under CI it fails instead: a privileged test that skips in CI hides a broken
// data path.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if unix.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("needs root (%s), and CI=true forbids skipping", why)
	}
	t.Skipf("needs root: %s", why)
}
