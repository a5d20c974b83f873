package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// pingClient times requests against one echo server from the lab's peer
// netns, one request in flight.
type pingClient struct {
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	addr     string // "IP:PORT"
	size     int
	warmup   int
	requests int
	timeout  time.Duration
}

// message fills b with request seq: the sequence number, then a pattern
// that depends on it, so that an answer to another request never passes
// for this one's.
func message(b []byte, seq uint64) {
	binary.BigEndian.PutUint64(b, seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)
	}
}

// pingPong runs TCP ping-pong on one connection: write a request, read
// its echo, check it, and time the two together. It returns the
// statistics and the samples (µs) of the timed requests.
func (c *pingClient) pingPong(ctx context.Context) (LatencyStat, []float64) {
	conn, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return LatencyStat{Err: fmt.Sprintf("dial tcp %s: %s", c.addr, err)}, nil
	}
	defer conn.Close()
	// Go sets TCP_NODELAY on its connections already; say it anyway: a
	// Nagle delay on the client would be the client's.
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			return LatencyStat{Err: fmt.Sprintf("set TCP_NODELAY: %s", err)}, nil
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req, resp := make([]byte, c.size), make([]byte, c.size)
	samples := make([]float64, 0, c.requests)
	var start time.Time
	for i := -c.warmup; i < c.requests; i++ {
		if i == 0 {
			start = time.Now()
		}
		if err := ctx.Err(); err != nil {
			return c.failed("tcp", i, err, samples, start)
		}
		message(req, uint64(i+c.warmup))
		if err := conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return LatencyStat{Err: err.Error()}, nil
		}
		t0 := time.Now()
		if _, err := conn.Write(req); err != nil {
			return c.failed("tcp", i, err, samples, start)
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return c.failed("tcp", i, err, samples, start)
		}
		d := time.Since(t0)
		if !bytes.Equal(req, resp) {
			return LatencyStat{Err: fmt.Sprintf("tcp request %d: the answer is not the request: % x", i, resp[:min(16, len(resp))])}, nil
		}
		if i >= 0 {
			samples = append(samples, float64(d.Nanoseconds())/1e3)
		}
	}
	return latencyStat(samples, 0, time.Since(start)), samples
}

// echo runs UDP echo on a connected socket: send a datagram, wait for its
// echo (dropping stale echoes of earlier requests), and time the two
// together. A request not answered within the timeout is counted lost and
// the next one goes out.
func (c *pingClient) echo(ctx context.Context) (LatencyStat, []float64) {
	conn, err := c.dial(ctx, "udp", c.addr)
	if err != nil {
		return LatencyStat{Err: fmt.Sprintf("dial udp %s: %s", c.addr, err)}, nil
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req, resp := make([]byte, c.size), make([]byte, c.size+1) // +1: a longer datagram shows
	samples := make([]float64, 0, c.requests)
	lost := 0
	var start time.Time
	for i := -c.warmup; i < c.requests; i++ {
		if i == 0 {
			start = time.Now()
		}
		if err := ctx.Err(); err != nil {
			return c.failed("udp", i, err, samples, start)
		}
		seq := uint64(i + c.warmup)
		message(req, seq)
		if err := conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return LatencyStat{Err: err.Error()}, nil
		}
		t0 := time.Now()
		if _, err := conn.Write(req); err != nil {
			return c.failed("udp", i, err, samples, start)
		}
		answered := false
		for !answered {
			n, err := conn.Read(resp)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				if i >= 0 {
					lost++
				}
				break
			}
			if err != nil {
				return c.failed("udp", i, err, samples, start)
			}
			if n >= 8 && binary.BigEndian.Uint64(resp) < seq {
				continue // the late echo of a request counted lost
			}
			if n != c.size || !bytes.Equal(req, resp[:n]) {
				return LatencyStat{Err: fmt.Sprintf("udp request %d: the answer (%d bytes) is not the request: % x",
					i, n, resp[:min(16, n)])}, nil
			}
			answered = true
		}
		d := time.Since(t0)
		if answered && i >= 0 {
			samples = append(samples, float64(d.Nanoseconds())/1e3)
		}
	}
	st := latencyStat(samples, lost, time.Since(start))
	if len(samples) == 0 {
		st.Err = fmt.Sprintf("all %d requests lost", lost)
	}
	return st, samples
}

// failed is the statistic of a measurement that stopped at request i
// (negative: in the warm-up).
func (c *pingClient) failed(kind string, i int, err error, samples []float64, start time.Time) (LatencyStat, []float64) {
	st := LatencyStat{}
	if len(samples) > 0 {
		st = latencyStat(samples, 0, time.Since(start))
	}
	phase := fmt.Sprintf("request %d", i)
	if i < 0 {
		phase = fmt.Sprintf("warm-up request %d", i+c.warmup)
	}
	st.Err = fmt.Sprintf("%s %s: %s", kind, phase, err)
	return st, nil
}
