package bpf

import "errors"

// Sentinel errors returned (wrapped) by this package.
var (
	// ErrInvalidOptions reports an option or argument outside its allowed
	// range; the message names the field.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrClosed reports a call on an object after Close.
	ErrClosed = errors.New("closed")
	// ErrInterrupted reports a BPF_PROG_RUN call cut short by a signal.
	// Some runs may have happened; the program's own counters say how many.
	ErrInterrupted = errors.New("program run interrupted")
	// ErrRuleNotFound reports a rule id that is not in the rule table.
	ErrRuleNotFound = errors.New("rule not found")
	// ErrRuleExists reports a rule whose prefix, protocol, port range and
	// priority equal those of a rule already in the table.
	ErrRuleExists = errors.New("rule exists")
	// ErrTableFull reports a prefix that already holds MaxRulesPerPrefix
	// rules, or a rule table with SteerOptions.Prefixes prefixes.
	ErrTableFull = errors.New("table full")
	// ErrLiveFramesRefused reports a kernel that refuses BPF_PROG_RUN with
	// BPF_F_TEST_XDP_LIVE_FRAMES (EPERM or EOPNOTSUPP): too old, or built or
	// configured not to inject frames that way. Generate with AF_XDP TX
	// instead.
	ErrLiveFramesRefused = errors.New("the kernel refuses live-frames runs")
)
