package main

import (
	"encoding/json"
	"io"
	"os"
)

// The JSON contract, for every command with --json: stdout carries JSON
// values only, each one compact object (or array) on its own line; human
// text goes to stderr. Live commands (rx, gen, run, serve) print one
// {"type":"interval",...} object per interval and end with one
// {"type":"summary",...} object. Keys are snake_case; empty lists are [],
// never null. Errors are text on stderr with a non-zero exit status.

// Values of the "type" key of a live command's lines.
const (
	lineInterval = "interval"
	lineSummary  = "summary"
)

// writeJSON writes v as one compact line.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// humanOut is where a command's human text goes: stdout, or stderr when
// stdout carries its JSON.
func humanOut(asJSON bool) io.Writer {
	if asJSON {
		return os.Stderr
	}
	return os.Stdout
}
