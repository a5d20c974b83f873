package umem

import "errors"

// Sentinel errors. Wrapped errors name the object and value; test with errors.Is.
var (
	// ErrFrameSize: frame size is not 2048 or 4096.
	ErrFrameSize = errors.New("frame size must be 2048 or 4096")
	// ErrRingSize: a ring size is zero or not a power of two.
	ErrRingSize = errors.New("ring size must be a non-zero power of two")
	// ErrHeadroom: the headroom leaves no room for an MTU-sized frame.
	ErrHeadroom = errors.New("headroom too large for the frame size")
	// ErrNumFrames: the frame count is zero or too large.
	ErrNumFrames = errors.New("frame count must be 1..(1<<24)")
	// ErrClosed: the UMEM or socket was closed.
	ErrClosed = errors.New("closed")
	// ErrBadAddr: an address is outside the UMEM or not in the state the call expects.
	ErrBadAddr = errors.New("frame address not owned by the caller")
	// ErrLeak: the audit found frames in no place or in two places.
	ErrLeak = errors.New("frame accounting mismatch")
)
