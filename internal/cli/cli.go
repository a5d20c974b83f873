// Package cli holds the flag conventions every xnic command shares: a flag
// set named after its command, parse errors reported once with the
// command's name, bad values reported with the flag they belong to, and no
// stray positional arguments. Both cmd/xnic and the benchmark commands
// under bench/ use it, so `xnic bench` behaves like every other subcommand.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ErrUsage marks a usage error: main exits 2 on it. A bare ErrUsage has
// been reported to the user already; a *UsageError has not, and main
// prints it after the command's name.
var ErrUsage = errors.New("usage")

// ErrReported marks a failure the command has already reported in its own
// form (such as a checker's file:line: messages): main exits 1 without
// printing it again.
var ErrReported = errors.New("failure reported")

// UsageError is a bad flag value or argument found after parsing. It is not
// printed where it is made: main prints it as "xnic COMMAND: --flag: msg".
// errors.Is(err, ErrUsage) holds.
type UsageError struct {
	Cmd  string // the command in full ("xnic lab up") when known, for main to print
	Flag string // the flag at fault, without dashes; "" for an argument
	Msg  string
}

func (e *UsageError) Error() string {
	if e.Flag == "" {
		return e.Msg
	}
	return "--" + e.Flag + ": " + e.Msg
}

// Is makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// NewFlags makes a command's flag set, named "xnic NAME"; args is the
// synopsis its usage shows after the name.
func NewFlags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("xnic "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xnic %s %s\n\nflags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs, which takes flags only: a positional argument
// is a usage error. -h comes back as flag.ErrHelp after the usage is
// printed; a parse failure is printed with the command's name and the
// usage, and comes back as ErrUsage.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := ParseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &UsageError{Cmd: fs.Name(), Msg: fmt.Sprintf("unexpected argument %q: flags only", fs.Arg(0))}
	}
	return nil
}

// ParseArgs is Parse for a command that takes positional arguments too
// (fs.Args()).
func ParseArgs(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	// The flag package prints a parse error without the command's name:
	// silence it and print our own.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	}
	fmt.Fprintf(out, "%s: %s\n", fs.Name(), err)
	fs.Usage()
	return ErrUsage
}

// Alias makes old another spelling of the flag named name, kept for one
// release after a rename: both set the same value, and the usage sends
// readers to the new name.
func Alias(fs *flag.FlagSet, old, name string) {
	fs.Var(fs.Lookup(name).Value, old, "old spelling of --"+name)
}

// FlagError is a bad flag value found after parsing; it names the flag.
func FlagError(flagName string, format string, a ...any) error {
	return &UsageError{Flag: flagName, Msg: fmt.Sprintf(format, a...)}
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
