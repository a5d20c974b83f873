package conn

import (
	"errors"
	"fmt"
)

// Errors returned by the constructors. Data-path operations never return
// errors: they return a Verdict or a Result.
var (
	// ErrOptions wraps every invalid option.
	ErrOptions = errors.New("invalid options")
)

func optErr(what, format string, args ...any) error {
	return fmt.Errorf("conn: %s: %s: %w", what, fmt.Sprintf(format, args...), ErrOptions)
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }
