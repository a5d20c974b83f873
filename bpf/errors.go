package bpf

import "errors"

// Sentinel errors returned (wrapped) by this package.
var (
	// ErrInvalidOptions reports an option outside its allowed range.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrClosed reports a call on an object after Close.
	ErrClosed = errors.New("closed")
	// ErrInterrupted reports a BPF_PROG_RUN call cut short by a signal.
	// Some runs may have happened; the program's own counters say how many.
	ErrInterrupted = errors.New("program run interrupted")
)
