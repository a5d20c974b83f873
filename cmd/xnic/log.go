package main

import (
	"flag"
	"log/slog"
	"os"

	"github.com/xnic/xnic/internal/cli"
)

// logFlags are --log-level and --log-format, for the commands that run an
// engine (run, serve, rx).
type logFlags struct {
	level, format *string
}

func addLogFlags(fs *flag.FlagSet) logFlags {
	return logFlags{
		level:  fs.String("log-level", "info", "least severe engine event logged: debug, info, warn or error"),
		format: fs.String("log-format", "text", "engine events on stderr as text (key=value) or json (one object per line)"),
	}
}

// logger makes the logger the flags ask for and makes it slog's default,
// so that the engine and everything else log the same way.
func (f logFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*f.level)); err != nil {
		return nil, cli.FlagError("log-level", "want debug, info, warn or error, got %q", *f.level)
	}
	o := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *f.format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, o)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, o)
	default:
		return nil, cli.FlagError("log-format", "want text or json, got %q", *f.format)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}
