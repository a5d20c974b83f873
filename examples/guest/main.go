// Command guest shows xnic as a library: it starts an engine on a port,
// attaches one guest with its own TCP/IP stack, serves HTTP from the guest
// with the standard net/http package, and, when asked, dials out from the
// guest as well.
//
//	sudo xnic lab up                     # xnic0 <-> xnicp0 in netns xnic-peer
//	sudo go run ./examples/guest --iface xnic0 --addr 198.18.0.10/24
//	sudo ip netns exec xnic-peer curl http://198.18.0.10:8080/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/stack"
)

func main() {
	iface := flag.String("iface", "xnic0", "the port")
	addr := flag.String("addr", "198.18.0.10/24", "the guest's address and subnet")
	mac := flag.String("mac", "02:78:6e:69:63:10", "the guest's MAC address")
	dial := flag.String("dial", "", "also fetch http://HOST:PORT/ from the guest, e.g. 198.18.0.2:8000")
	flag.Parse()
	if err := run(*iface, *addr, *mac, *dial); err != nil {
		log.Fatal(err)
	}
}

func run(iface, addr, mac, dial string) error {
	pfx, err := netip.ParsePrefix(addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("--mac: %w", err)
	}

	// 1. An engine on the port, with the receive pipeline that feeds
	//    guests' stacks (parse, lookahead, connection contexts, GRO).
	opts := engine.DefaultOptions()
	opts.Ifaces = []string{iface}
	opts.NoCatchAll = true // traffic no guest claims stays with the host
	po := engine.DefaultPipelineOptions()
	opts.Pipeline = &po
	e, err := engine.New(opts, nil)
	if err != nil {
		return err
	}
	defer e.Close()
	e.Start()

	// 2. A guest with its own netstack. Attach steers its address (ARP and
	//    NDP included) to its own sockets.
	g, err := stack.Attach(e, engine.GuestSpec{
		Name: "example", Port: iface, MAC: hw, Addrs: []netip.Prefix{pfx},
	}, stack.DefaultOptions())
	if err != nil {
		return err
	}
	defer g.Close()

	// 3. Standard net.Listener and net.Conn from the guest's stack.
	ln, err := g.Listen("tcp", ":8080")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from a guest of xnic; you are %s\n", r.RemoteAddr)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("guest serving http://%s:8080/ on %s; Ctrl-C stops\n", pfx.Addr(), iface)

	if dial != "" {
		client := &http.Client{Transport: &http.Transport{DialContext: g.Dial}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + dial + "/")
		if err != nil {
			return fmt.Errorf("dial from the guest: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		fmt.Printf("the guest fetched http://%s/: %s %q\n", dial, resp.Status, body)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return errors.Join(srv.Close(), g.Close(), e.Close())
}
