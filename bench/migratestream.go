package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/stack"
)

// The migration benchmark's download: a guest writes an endless stream of
// bytes to one TCP connection from the peer, and the peer's reader notes
// the time of every read that brought payload. The longest interval
// between two such reads around an event is the stall the peer saw.

// streamChunk is the guest's write size and the peer's read buffer.
const streamChunk = 128 << 10

// download is one guest-to-peer stream.
type download struct {
	ln   net.Listener // the guest's
	conn net.Conn     // the peer's end
	// sent is what the guest's writer has written, read is what the peer
	// has read; the writer's error ends up in sendErr, the reader's in
	// readErr, each once its goroutine is done.
	sent, read atomic.Int64
	sendDone   chan struct{}
	readDone   chan struct{}
	sendErr    error
	readErr    error

	// mu guards arrivals: the reader's payload arrival times (Unix ns)
	// since the last take, the first of them the last one before it.
	mu       sync.Mutex
	arrivals []int64
	last     atomic.Int64 // the latest arrival, for waits without mu
}

// startDownload listens on the guest at addr, dials it from the lab's peer
// netns and starts the guest's writer and the peer's reader.
func startDownload(ctx context.Context, l *lab.Lab, g *stack.Guest, addr string) (*download, error) {
	ln, err := g.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on the guest at %s: %w", addr, err)
	}
	return startDownloadOn(ctx, l, ln, addr)
}

// startDownloadOn dials ln, a guest's or the host kernel's listener at
// addr, from the lab's peer netns, and starts the writer on the accepted
// connection and the peer's reader. The download owns ln from here on,
// and closes it on failure.
func startDownloadOn(ctx context.Context, l *lab.Lab, ln net.Listener, addr string) (*download, error) {
	d := &download{ln: ln, sendDone: make(chan struct{}), readDone: make(chan struct{}),
		arrivals: make([]int64, 0, 1<<16)}
	accepted := make(chan net.Conn, 1)
	go func() {
		defer close(d.sendDone)
		c, err := ln.Accept()
		if err != nil {
			d.sendErr = fmt.Errorf("accept: %w", err)
			accepted <- nil
			return
		}
		accepted <- c
		defer c.Close()
		buf := make([]byte, streamChunk)
		for i := range buf {
			buf[i] = byte(i*7 + i>>8)
		}
		for {
			n, err := c.Write(buf)
			d.sent.Add(int64(n))
			if err != nil {
				d.sendErr = fmt.Errorf("write: %w", err)
				return
			}
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := l.PeerDial(dctx, "tcp", addr)
	if err != nil {
		ln.Close()
		<-d.sendDone
		return nil, fmt.Errorf("dial %s from the peer: %w", addr, err)
	}
	if c := <-accepted; c == nil {
		conn.Close()
		ln.Close()
		return nil, d.sendErr
	}
	d.conn = conn
	go d.readLoop()
	return d, nil
}

// readLoop reads until the connection fails or closes, noting each
// payload's arrival.
func (d *download) readLoop() {
	defer close(d.readDone)
	buf := make([]byte, streamChunk)
	for {
		n, err := d.conn.Read(buf)
		if n > 0 {
			now := time.Now().UnixNano()
			d.read.Add(int64(n))
			d.last.Store(now)
			d.mu.Lock()
			d.arrivals = append(d.arrivals, now)
			d.mu.Unlock()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			d.readErr = fmt.Errorf("peer read: %w", err)
			return
		}
	}
}

// take returns the arrivals since the last take, preceded by the last
// arrival before it, and keeps only the latest as the start of the next.
func (d *download) take() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]int64(nil), d.arrivals...)
	if n := len(d.arrivals); n > 0 {
		d.arrivals[0] = d.arrivals[n-1]
		d.arrivals = d.arrivals[:1]
	}
	return out
}

// failed returns the reader's error once it has stopped, or nil.
func (d *download) failed() error {
	select {
	case <-d.readDone:
		return d.readErr
	default:
		return nil
	}
}

// waitArrivalAfter waits until payload arrives after t (Unix ns), the
// reader fails, or timeout passes.
func (d *download) waitArrivalAfter(ctx context.Context, t int64, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for d.last.Load() <= t {
		if err := d.failed(); err != nil {
			return err
		}
		if time.Now().After(end) {
			return fmt.Errorf("no payload reached the peer for %s", time.Duration(time.Now().UnixNano()-d.last.Load()).Round(time.Millisecond))
		}
		if err := sleep(ctx, time.Millisecond, nil); err != nil {
			return err
		}
	}
	return nil
}

// close ends the stream: the peer closes its end, the guest's writer
// fails and returns, the listener closes.
func (d *download) close() {
	d.conn.Close()
	<-d.readDone
	d.ln.Close()
	<-d.sendDone
}

// longestGap is the longest interval between two consecutive arrivals
// (sorted Unix ns) that overlaps the window [from, to], and where it began;
// ok is false when no interval overlaps it.
func longestGap(arrivals []int64, from, to int64) (gap time.Duration, at int64, ok bool) {
	for i := 1; i < len(arrivals); i++ {
		a, b := arrivals[i-1], arrivals[i]
		if b < from || a > to {
			continue
		}
		if g := time.Duration(b - a); !ok || g > gap {
			gap, at, ok = g, a, true
		}
	}
	return gap, at, ok
}
