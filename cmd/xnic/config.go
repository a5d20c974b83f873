package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/internal/cli"
)

// configCheck is one file in `xnic config check --json`.
type configCheck struct {
	File     string   `json:"file"`
	OK       bool     `json:"ok"`
	Ports    []string `json:"ports"`
	Queues   []int    `json:"queues"`
	Guests   []string `json:"guests"`
	Classes  []string `json:"classes"`
	Services int      `json:"services"`
	Error    string   `json:"error,omitempty"`
	Line     int      `json:"line,omitempty"`
	Field    string   `json:"field,omitempty"`
}

func runConfig(_ context.Context, args []string) error {
	return configCmd(args, os.Stdout, os.Stderr)
}

// configCmd runs `xnic config check FILE... [--json]`: each file is
// decoded and resolved exactly as run and serve do, and nothing is loaded,
// so it needs no privileges. A good file prints "FILE: ok: " and a
// summary; a bad one prints its error as file:line: path: message on
// stderr. With --json, stdout has one JSON object per file.
func configCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stderr, "usage: xnic config check FILE... [--json]")
			return nil
		}
		fmt.Fprintln(stderr, "usage: xnic config check FILE... [--json]")
		return cli.ErrUsage
	}
	fs := cli.NewFlags("config check", "FILE... [--json]")
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per file on stdout")
	// Flags may come before or after the files.
	var files []string
	rest := args[1:]
	for {
		if err := cli.ParseArgs(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) == 0 {
		return &cli.UsageError{Msg: "check: no FILE given"}
	}
	human := stdout
	if *asJSON {
		human = stderr
	}
	bad := 0
	for _, f := range files {
		res := checkConfig(f)
		if res.OK {
			fmt.Fprintf(human, "%s: ok: %s\n", f, res.summary())
		} else {
			bad++
			fmt.Fprintln(stderr, res.Error)
		}
		if *asJSON {
			b, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(b))
		}
	}
	if bad > 0 {
		return cli.ErrReported
	}
	return nil
}

func checkConfig(file string) configCheck {
	res := configCheck{File: file, Ports: []string{}, Queues: []int{}, Guests: []string{}, Classes: []string{}}
	cfg, err := config.Load(file)
	var r *config.Resolved
	if err == nil {
		r, err = cfg.Resolve()
	}
	if err != nil {
		res.Error = err.Error()
		var ce *config.Error
		if errors.As(err, &ce) {
			res.Line, res.Field = ce.Line, ce.Field
		}
		return res
	}
	res.OK = true
	res.Ports = append(res.Ports, r.Options.Ifaces...)
	res.Queues = append(res.Queues, r.Options.Queues...)
	for _, g := range r.Guests {
		res.Guests = append(res.Guests, g.Name)
		res.Services += len(g.Services)
	}
	for _, c := range r.Options.Classes {
		res.Classes = append(res.Classes, c.Name)
	}
	return res
}

// summary is the one line after "FILE: ok: ".
func (c configCheck) summary() string {
	part := func(n int, one, many string, names []string) string {
		s := fmt.Sprintf("%d %s", n, many)
		if n == 1 {
			s = "1 " + one
		}
		if len(names) > 0 {
			s += " (" + strings.Join(names, ", ") + ")"
		}
		return s
	}
	q := make([]string, len(c.Queues))
	for i, n := range c.Queues {
		q[i] = fmt.Sprint(n)
	}
	s := part(len(c.Ports), "port", "ports", c.Ports) + " on queues " + strings.Join(q, ",") + ", " +
		part(len(c.Guests), "guest", "guests", c.Guests) + ", " +
		part(len(c.Classes), "class", "classes", c.Classes)
	if c.Services > 0 {
		s += ", " + part(c.Services, "service", "services", nil)
	}
	return s
}
