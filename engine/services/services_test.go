package services

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// listenNet serves on the loopback, on ports the kernel picks.
type loopNet struct{ t *testing.T }

func (l loopNet) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, "127.0.0.1:0")
}

func (l loopNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket(network, "127.0.0.1:0")
}

func start(t *testing.T, kind string, c *Counters) (*Service, string) {
	t.Helper()
	var addr string
	n := &capture{loopNet: loopNet{t}, addr: &addr}
	s, err := Start(n, kind, 0, "g1", c, func() any { return map[string]int{"x": 1} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, addr
}

type capture struct {
	loopNet
	addr *string
}

func (c *capture) Listen(network, address string) (net.Listener, error) {
	ln, err := c.loopNet.Listen(network, address)
	if err == nil {
		*c.addr = ln.Addr().String()
	}
	return ln, err
}

func (c *capture) ListenPacket(network, address string) (net.PacketConn, error) {
	pc, err := c.loopNet.ListenPacket(network, address)
	if err == nil {
		*c.addr = pc.LocalAddr().String()
	}
	return pc, err
}

func TestServices(t *testing.T) {
	var c Counters
	_, discard := start(t, Discard, &c)
	_, echo := start(t, Echo, &c)
	_, uecho := start(t, UDPEcho, &c)
	_, web := start(t, HTTP, &c)

	conn, err := net.Dial("tcp", discard)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(make([]byte, 100000))
	conn.Close()

	conn, err = net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("xnic"), 5000)
	go conn.Write(msg)
	got := make([]byte, len(msg))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v, equal %v", err, bytes.Equal(got, msg))
	}
	conn.Close()

	uc, err := net.Dial("udp", uecho)
	if err != nil {
		t.Fatal(err)
	}
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	uc.Write([]byte("ping"))
	b := make([]byte, 100)
	if n, err := uc.Read(b); err != nil || string(b[:n]) != "ping" {
		t.Fatalf("udp echo: %q, %v", b[:n], err)
	}

	resp, err := http.Get("http://" + web + "/bytes/1000003")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, resp.Body)
	resp.Body.Close()
	if n != 1000003 || hex.EncodeToString(h.Sum(nil)) != PatternSHA256(1000003) {
		t.Fatalf("download: %d bytes, sha256 %x", n, h.Sum(nil))
	}
	resp, err = http.Post("http://"+web+"/upload", "application/octet-stream", io.LimitReader(Pattern(), 777777))
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if up.Bytes != 777777 || up.SHA256 != PatternSHA256(777777) {
		t.Fatalf("upload: %+v", up)
	}
	resp, err = http.Get("http://" + web + "/bytes/-1")
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad download size: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + web + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st["guest"] != "g1" || st["stack"] == nil {
		t.Fatalf("status: %v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.BytesIn.Load() < 100000+20000+4+777777 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.BytesIn.Load(); got != 100000+20000+4+777777 {
		t.Fatalf("bytes in %d", got)
	}
	if _, err := Start(HostNet{}, "gopher", 1, "x", &c, nil); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := Start(HostNet{}, Echo, 70000, "x", &c, nil); err == nil || !strings.Contains(err.Error(), "port") {
		t.Fatalf("bad port: %v", err)
	}
}

func TestPatternNotAligned(t *testing.T) {
	a, b := make([]byte, 1000), make([]byte, 1000)
	p := Pattern()
	p.Read(a[:7])
	p.Read(a[7:])
	io.ReadFull(Pattern(), b)
	if !bytes.Equal(a, b) {
		t.Fatal("pattern depends on read sizes")
	}
	if fmt.Sprint(b[250], b[251]) != "250 0" {
		t.Fatalf("pattern %v", b[249:253])
	}
}
