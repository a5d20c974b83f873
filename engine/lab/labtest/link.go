package labtest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/lab"
)

// LinkDown sets one end of port i of l down (lab.Lab.SetLinkDown), failing
// t on error: a failover test's pulled cable.
func LinkDown(t testing.TB, l *lab.Lab, i int, end lab.End) {
	t.Helper()
	if err := l.SetLinkDown(i, end); err != nil {
		t.Fatalf("labtest: %v", err)
	}
}

// LinkUp sets one end of port i of l up again, failing t on error.
func LinkUp(t testing.TB, l *lab.Lab, i int, end lab.End) {
	t.Helper()
	if err := l.SetLinkUp(i, end); err != nil {
		t.Fatalf("labtest: %v", err)
	}
}

// WaitLearned waits up to timeout until the peer bridge of l has learned mac
// on port, as it does from the first frame a guest sends from that port (its
// gratuitous ARP or unsolicited neighbour advertisement after a move). It
// fails t with where the bridge has mac instead.
func WaitLearned(t testing.TB, l *lab.Lab, mac net.HardwareAddr, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, ok, err := l.LearnedPort(mac)
		if err != nil {
			t.Fatalf("labtest: %v", err)
		}
		if ok && got == port {
			return
		}
		if time.Now().After(deadline) {
			where := "nowhere"
			if ok {
				where = "on port " + strconv.Itoa(got)
			}
			t.Fatalf("labtest: bridge %s has not learned %s on port %d within %s (it is %s)",
				l.Bridge.Name, mac, port, timeout, where)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
