package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/engine/services"
)

// Client settings.
const (
	// metricGrace bounds a metric beyond its window: a server that stops
	// answering fails the metric instead of hanging the run.
	metricGrace = 30 * time.Second
	// clientBuffer is the size of the transport's buffers and of the
	// download's reads: large writes and reads, few system calls.
	clientBuffer = 256 << 10
	// greeting starts the body of GET / (services.HTTPHandler).
	greeting = "xnic guest "
)

// tcpClient measures one server from the lab's peer netns.
type tcpClient struct {
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	base string // "http://ADDR:PORT"
	dur  time.Duration
	conc int
	hash *patternHasher
}

// transport is a fresh HTTP/1.1 transport dialling from the peer netns,
// keeping up to idle connections per host.
func (c *tcpClient) transport(idle int) *http.Transport {
	return &http.Transport{
		DialContext:           c.dial,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		DisableCompression:    true,
		WriteBufferSize:       clientBuffer,
		ReadBufferSize:        clientBuffer,
		ResponseHeaderTimeout: metricGrace,
	}
}

// upload POSTs the pattern for the window in a chunked body, then checks
// the server's count and hash of what it read.
func (c *tcpClient) upload(ctx context.Context) Transfer {
	ctx, cancel := context.WithTimeout(ctx, c.dur+metricGrace)
	defer cancel()
	tr := c.transport(1)
	defer tr.CloseIdleConnections()
	body := &timedPattern{r: services.Pattern()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/upload", body)
	if err != nil {
		return Transfer{Err: err.Error()}
	}
	req.ContentLength = -1 // chunked: the client does not know the length
	start := time.Now()
	body.deadline = start.Add(c.dur)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return Transfer{Err: fmt.Sprintf("post /upload: %s", err)}
	}
	elapsed := time.Since(start)
	defer resp.Body.Close()
	var got struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Transfer{Err: fmt.Sprintf("post /upload: read response: %s", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return Transfer{Err: fmt.Sprintf("post /upload: %s: %s", resp.Status, strings.TrimSpace(string(b)))}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		return Transfer{Err: fmt.Sprintf("post /upload: response %q: %s", b, err)}
	}
	t := Transfer{Bytes: got.Bytes, Seconds: elapsed.Seconds(), SHA256: got.SHA256}
	t.BitsPerSec = float64(t.Bytes) * 8 / t.Seconds
	switch sent := body.sent.Load(); {
	case got.Bytes != sent:
		t.Err = fmt.Sprintf("server read %d bytes, the client sent %d", got.Bytes, sent)
	case got.Bytes == 0:
		t.Err = "nothing uploaded"
	default:
		want, err := c.hash.sum(got.Bytes)
		if err != nil {
			t.Err = err.Error()
		} else if want != got.SHA256 {
			t.Err = fmt.Sprintf("server's sha256 of %d bytes is %s, the pattern's is %s", got.Bytes, got.SHA256, want)
		}
	}
	return t
}

// timedPattern is a request body: the pattern until the deadline, then
// EOF. sent counts what it produced.
type timedPattern struct {
	r        io.Reader
	deadline time.Time
	sent     atomic.Int64
}

func (p *timedPattern) Read(b []byte) (int, error) {
	if !time.Now().Before(p.deadline) {
		return 0, io.EOF
	}
	n, err := p.r.Read(b)
	p.sent.Add(int64(n))
	return n, err
}

// download GETs services.MaxDownload bytes, reads for the window, checking
// every byte against the pattern, and hangs up.
func (c *tcpClient) download(ctx context.Context) Transfer {
	ctx, cancel := context.WithTimeout(ctx, c.dur+metricGrace)
	defer cancel()
	tr := c.transport(1)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/bytes/"+strconv.FormatInt(services.MaxDownload, 10), nil)
	if err != nil {
		return Transfer{Err: err.Error()}
	}
	start := time.Now()
	deadline := start.Add(c.dur)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return Transfer{Err: fmt.Sprintf("get /bytes: %s", err)}
	}
	defer resp.Body.Close() // before the whole body: the connection is closed
	if resp.StatusCode != http.StatusOK {
		return Transfer{Err: "get /bytes: " + resp.Status}
	}
	buf := make([]byte, clientBuffer)
	pc := newPatternChecker(len(buf))
	for time.Now().Before(deadline) {
		m, err := resp.Body.Read(buf)
		if cerr := pc.check(buf[:m]); cerr != nil {
			return Transfer{Bytes: pc.n, Err: cerr.Error()}
		}
		if err != nil {
			return Transfer{Bytes: pc.n, Err: fmt.Sprintf("get /bytes: after %d bytes: %s", pc.n, err)}
		}
	}
	n := pc.n
	elapsed := time.Since(start)
	t := Transfer{Bytes: n, Seconds: elapsed.Seconds(), BitsPerSec: float64(n) * 8 / elapsed.Seconds()}
	if n == 0 {
		t.Err = "nothing downloaded"
	}
	return t
}

// requests runs Concurrency keep-alive clients doing GET / for the window.
func (c *tcpClient) requests(ctx context.Context) RequestRate {
	ctx, cancel := context.WithTimeout(ctx, c.dur+metricGrace)
	defer cancel()
	tr := c.transport(c.conc)
	defer tr.CloseIdleConnections()
	var (
		total   atomic.Int64
		errOnce sync.Once
		firstE  error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstE = err; cancel() })
	}
	start := time.Now()
	deadline := start.Add(c.dur)
	for range c.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := c.get(ctx, tr, buf); err != nil {
					fail(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := RequestRate{Requests: total.Load(), Seconds: elapsed.Seconds()}
	r.PerSec = float64(r.Requests) / r.Seconds
	switch {
	case firstE != nil:
		r.Err = firstE.Error()
	case r.Requests == 0:
		r.Err = "no request answered"
	}
	return r
}

// get does one GET / and checks the greeting.
func (c *tcpClient) get(ctx context.Context, tr *http.Transport, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/", nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("get /: %w", err)
	}
	n, err := io.ReadFull(resp.Body, buf)
	resp.Body.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("get /: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(buf[:n], []byte(greeting)) {
		return fmt.Errorf("get /: %s %q", resp.Status, buf[:n])
	}
	return nil
}

// patternPeriod is the period of services.Pattern: bytes 0..250 repeating.
const patternPeriod = 251

// patternWindow returns at least n+patternPeriod bytes of the pattern from
// its start, so that [off:off+n] is the pattern at any offset ≡ off.
func patternWindow(n int) []byte {
	b := make([]byte, n+patternPeriod)
	io.ReadFull(services.Pattern(), b)
	return b
}

// patternChecker checks a download against the pattern, read by read.
type patternChecker struct {
	want []byte // patternWindow of the largest read
	n    int64  // bytes checked so far
}

// newPatternChecker checks reads of up to max bytes.
func newPatternChecker(max int) *patternChecker {
	return &patternChecker{want: patternWindow(max)}
}

// check compares the next bytes of the download, b, with the pattern at
// their offset, and counts them when they match.
func (c *patternChecker) check(b []byte) error {
	off := int(c.n % patternPeriod)
	if !bytes.Equal(b, c.want[off:off+len(b)]) {
		i := 0
		for b[i] == c.want[off+i] {
			i++
		}
		return fmt.Errorf("byte %d is %d, the pattern's is %d", c.n+int64(i), b[i], c.want[off+i])
	}
	c.n += int64(len(b))
	return nil
}

// patternHasher computes services.PatternSHA256(n) from checkpoints of the
// hash state every `every` bytes, so that hashing the many gigabytes an
// upload moves costs at most `every` bytes once the checkpoints exist.
type patternHasher struct {
	mu     sync.Mutex
	every  int64
	states [][]byte // states[i]: the marshalled sha256 state after i*every bytes
}

// defaultHashStep is the spacing of the checkpoints.
const defaultHashStep = 64 << 20

// newPatternHasher makes a hasher with checkpoints every `every` bytes (0:
// the default).
func newPatternHasher(every int64) *patternHasher {
	if every <= 0 {
		every = defaultHashStep
	}
	h := sha256.New()
	st, _ := h.(encoding.BinaryMarshaler).MarshalBinary() // sha256's digest never fails
	return &patternHasher{every: every, states: [][]byte{st}}
}

// sum returns the hex sha256 of the first n bytes of the pattern.
func (p *patternHasher) sum(n int64) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("pattern hash: negative length %d", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := n / p.every
	for int64(len(p.states)) <= k {
		i := int64(len(p.states) - 1)
		h, err := p.hashFrom(i, p.every)
		if err != nil {
			return "", err
		}
		st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return "", fmt.Errorf("pattern hash: save state: %w", err)
		}
		p.states = append(p.states, st)
	}
	h, err := p.hashFrom(k, n-k*p.every)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashFrom restores checkpoint i and hashes the next m bytes of the
// pattern into it.
func (p *patternHasher) hashFrom(i, m int64) (interface{ Sum([]byte) []byte }, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.states[i]); err != nil {
		return nil, fmt.Errorf("pattern hash: restore state: %w", err)
	}
	r := services.Pattern()
	if _, err := io.CopyN(io.Discard, r, (i*p.every)%patternPeriod); err != nil {
		return nil, fmt.Errorf("pattern hash: %w", err)
	}
	if _, err := io.CopyN(h, r, m); err != nil {
		return nil, fmt.Errorf("pattern hash: %w", err)
	}
	return h, nil
}
