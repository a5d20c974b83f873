// Package cli holds the flag conventions every xnic command shares: a flag
// set named after its command, parse errors reported once by the flag
// package, and bad values reported with the flag they belong to. Both
// cmd/xnic and the benchmark commands under bench/ use it, so `xnic bench`
// behaves like every other subcommand.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// ErrUsage marks a usage error already reported to the user: main exits 2
// on it without printing it again.
var ErrUsage = errors.New("usage")

// ErrReported marks a failure the command has already reported in its own
// form (such as a checker's file:line: messages): main exits 1 without
// printing it again.
var ErrReported = errors.New("failure reported")

// NewFlags makes a command's flag set; parse errors come back as ErrUsage
// after the flag package has printed them with the usage.
func NewFlags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("xnic "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xnic %s %s\n\nflags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs. -h comes back as flag.ErrHelp, every other
// failure as ErrUsage.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	return nil
}

// FlagError is a bad flag value found after parsing; it names the flag.
func FlagError(flagName string, format string, a ...any) error {
	fmt.Fprintf(os.Stderr, "xnic: --%s: %s\n", flagName, fmt.Sprintf(format, a...))
	return ErrUsage
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
