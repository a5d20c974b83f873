package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
)

// Names of the pinned steering maps inside a pin directory (see Steer.Pin).
const (
	PinXSKMap = "xsks"
	PinStats  = "stats"
)

// MaxQueues bounds SteerOptions.Queues.
const MaxQueues = 1024

// SteerOptions configure LoadSteer.
type SteerOptions struct {
	// Queues is the number of rx queues the XSKMAP and the stats map cover
	// (their max_entries). Frames on higher queues go to the kernel uncounted.
	Queues int
}

// DefaultSteerOptions covers 64 rx queues.
func DefaultSteerOptions() SteerOptions { return SteerOptions{Queues: 64} }

func (o SteerOptions) validate() error {
	if o.Queues < 1 || o.Queues > MaxQueues {
		return fmt.Errorf("steer queues: must be 1..%d, got %d: %w", MaxQueues, o.Queues, ErrInvalidOptions)
	}
	return nil
}

// Steer is the loaded xnic_steer program with its XSKMAP and counters.
// Its methods are control plane, not for hot paths; they may be called
// concurrently, except Close.
type Steer struct {
	objs  steerObjects
	links attachments

	// mu guards pinDir and pinMade.
	mu      sync.Mutex
	pinDir  string // "" when not pinned
	pinMade bool   // Pin created pinDir, so Close removes it
}

// LoadSteer loads xnic_steer and creates its maps.
func LoadSteer(opts SteerOptions) (*Steer, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("load steer: %w", err)
	}
	removeMemlock()
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("load steer spec: %w", err)
	}
	for _, name := range []string{steerMapXsks, steerMapStats} {
		spec.Maps[name].MaxEntries = uint32(opts.Queues)
	}
	s := &Steer{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("load steer program: %w", err)
	}
	return s, nil
}

// Program is the loaded xnic_steer program.
func (s *Steer) Program() *ebpf.Program { return s.objs.XnicSteer }

// XSKMap is the XSKMAP that maps an rx queue to its AF_XDP socket.
func (s *Steer) XSKMap() *ebpf.Map { return s.objs.Xsks }

// StatsMap is the per-CPU array of SteerStats keyed by rx queue.
func (s *Steer) StatsMap() *ebpf.Map { return s.objs.Stats }

// Attach links xnic_steer to an interface; Close on the result or on the
// Steer detaches it.
func (s *Steer) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if s.objs.XnicSteer == nil {
		return nil, fmt.Errorf("attach steer: %w", ErrClosed)
	}
	return s.links.attach(s.objs.XnicSteer, ifindex, mode)
}

// RegisterSocket steers the IP traffic of rx queue to the AF_XDP socket fd,
// replacing any socket registered there before. The socket must be bound to
// that queue of the interface the program is attached to.
func (s *Steer) RegisterSocket(queue int, fd int) error {
	if s.objs.Xsks == nil {
		return fmt.Errorf("register socket on queue %d: %w", queue, ErrClosed)
	}
	if queue < 0 || queue >= int(s.objs.Xsks.MaxEntries()) {
		return fmt.Errorf("register socket on queue %d: outside 0..%d: %w",
			queue, s.objs.Xsks.MaxEntries()-1, ErrInvalidOptions)
	}
	if fd < 0 {
		return fmt.Errorf("register socket on queue %d: fd %d: %w", queue, fd, ErrInvalidOptions)
	}
	if err := s.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register socket fd %d on queue %d: %w", fd, queue, err)
	}
	return nil
}

// UnregisterSocket sends rx queue's traffic back to the kernel. Removing an
// empty slot is not an error.
func (s *Steer) UnregisterSocket(queue int) error {
	if s.objs.Xsks == nil {
		return fmt.Errorf("unregister socket on queue %d: %w", queue, ErrClosed)
	}
	if queue < 0 || queue >= int(s.objs.Xsks.MaxEntries()) {
		return fmt.Errorf("unregister socket on queue %d: outside 0..%d: %w",
			queue, s.objs.Xsks.MaxEntries()-1, ErrInvalidOptions)
	}
	err := s.objs.Xsks.Delete(uint32(queue))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister socket on queue %d: %w", queue, err)
	}
	return nil
}

// Stats returns the counters of every rx queue, summed over CPUs, indexed by
// queue.
func (s *Steer) Stats() ([]SteerStats, error) {
	st, err := readPerCPU[SteerStats](s.objs.Stats)
	if err != nil {
		return nil, fmt.Errorf("steer stats: %w", err)
	}
	return st, nil
}

// TotalStats returns the counters summed over queues and CPUs.
func (s *Steer) TotalStats() (SteerStats, error) {
	st, err := s.Stats()
	return sum(st), err
}

// Pin pins the XSKMAP and the stats map as dir/xsks and dir/stats on bpffs,
// so that another process (a C peer in a benchmark) can put its own socket
// into the same XSKMAP. It creates dir when missing. A pin left by a
// crashed process makes Pin fail with an error matching os.ErrExist; remove
// the directory first. Close unpins.
func (s *Steer) Pin(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.Xsks == nil {
		return fmt.Errorf("pin steer maps: %w", ErrClosed)
	}
	if s.pinDir != "" {
		return fmt.Errorf("pin steer maps in %s: already pinned in %s: %w", dir, s.pinDir, os.ErrExist)
	}
	made := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("pin steer maps: create %s: %w", dir, err)
		}
		made = true
	}
	xsks := filepath.Join(dir, PinXSKMap)
	if err := s.objs.Xsks.Pin(xsks); err != nil {
		if made {
			os.Remove(dir)
		}
		return fmt.Errorf("pin xsks map at %s: %w", xsks, err)
	}
	stats := filepath.Join(dir, PinStats)
	if err := s.objs.Stats.Pin(stats); err != nil {
		s.objs.Xsks.Unpin()
		if made {
			os.Remove(dir)
		}
		return fmt.Errorf("pin stats map at %s: %w", stats, err)
	}
	s.pinDir, s.pinMade = dir, made
	return nil
}

// PinDir is the directory the maps are pinned in, or "".
func (s *Steer) PinDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinDir
}

// Unpin removes the pins made by Pin, and the directory if Pin created it.
func (s *Steer) Unpin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unpinLocked()
}

func (s *Steer) unpinLocked() error {
	if s.pinDir == "" {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{s.objs.Xsks, s.objs.Stats} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", m, err))
		}
	}
	if s.pinMade && len(errs) == 0 {
		if err := os.Remove(s.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin dir %s: %w", s.pinDir, err))
		}
	}
	if len(errs) == 0 {
		s.pinDir, s.pinMade = "", false
	}
	return errors.Join(errs...)
}

// Close detaches every attachment, unpins the maps and frees the program and
// maps. The Steer is unusable afterwards.
func (s *Steer) Close() error {
	errs := []error{s.links.closeAll()}
	s.mu.Lock()
	if s.objs.Xsks != nil {
		errs = append(errs, s.unpinLocked())
		if err := s.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close steer objects: %w", err))
		}
		s.objs = steerObjects{}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}
