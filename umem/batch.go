package umem

// The batch operations below move frames between rings and keep the frame
// accounting true. They make no allocations and take no locks; one worker
// owns a socket.

// FillFromFree posts up to n frames from the free list to the fill ring and
// returns how many. It posts fewer when the free list or the ring is short.
func (s *Socket) FillFromFree(n int) int {
	u := s.u
	if n > u.top {
		n = u.top
	}
	if free := int(s.Fill.Free()); n > free {
		n = free
	}
	if n <= 0 {
		return 0
	}
	idx, _ := s.Fill.Reserve(uint32(n))
	for i := 0; i < n; i++ {
		u.top--
		a := u.free[u.top]
		f := a >> u.shift
		u.place[f] = PlaceRx
		u.group[f] = s.group
		s.Fill.Set(idx+uint32(i), a)
	}
	s.Fill.Submit(uint32(n))
	s.Counters.FillPosted += uint64(n)
	return n
}

// Refill posts frames the caller holds to the fill ring, all or nothing. The
// addresses may point anywhere inside their frames. It returns false, and
// posts none, when the ring lacks room for all of them.
func (s *Socket) Refill(addrs []uint64) bool {
	n := uint32(len(addrs))
	if n == 0 {
		return true
	}
	idx, ok := s.Fill.Reserve(n)
	if !ok {
		s.Counters.FillRingFull++
		return false
	}
	u := s.u
	mask := ^uint64(u.opts.FrameSize - 1)
	for i, a := range addrs {
		f := a >> u.shift
		u.place[f] = PlaceRx
		u.group[f] = s.group
		s.Fill.Set(idx+uint32(i), a&mask)
	}
	s.Fill.Submit(n)
	s.Counters.FillPosted += uint64(n)
	return true
}

// Receive takes up to len(descs) received packets off the rx ring into descs
// and returns how many. The caller now holds their frames (PlaceEngine) and
// must refill, transmit or release each one.
func (s *Socket) Receive(descs []Desc) int {
	n, idx := s.Rx.Peek(uint32(len(descs)))
	if n == 0 {
		s.Counters.RxEmptyPolls++
		return 0
	}
	u := s.u
	var bytes uint64
	for i := uint32(0); i < n; i++ {
		d := s.Rx.Get(idx + i)
		descs[i] = d
		u.place[d.Addr>>u.shift] = PlaceEngine
		bytes += uint64(d.Len)
	}
	s.Rx.Release(n)
	s.Counters.RxPackets += uint64(n)
	s.Counters.RxBytes += bytes
	return int(n)
}

// Transmit posts up to len(descs) packets the caller holds to the tx ring and
// kicks the kernel if it asked for it. It returns how many were posted; the
// rest stay with the caller.
func (s *Socket) Transmit(descs []Desc) int {
	n := s.Post(descs)
	s.KickTx()
	return n
}

// Post is Transmit without the kick: a sender that posts several batches
// in a round kicks once (KickTx) at its end, since in copy mode every kick
// is a system call. It counts a full ring (TxRingFull) when it cannot post
// everything.
func (s *Socket) Post(descs []Desc) int {
	n := uint32(len(descs))
	if free := s.Tx.Free(); n > free {
		n = free
		s.Counters.TxRingFull++
	}
	if n == 0 {
		return 0
	}
	idx, _ := s.Tx.Reserve(n)
	u := s.u
	g := s.ringHost.group
	var bytes uint64
	for i := uint32(0); i < n; i++ {
		d := descs[i]
		f := d.Addr >> u.shift
		u.place[f] = PlaceTx
		u.group[f] = g
		s.Tx.Set(idx+i, d)
		bytes += uint64(d.Len)
	}
	s.Tx.Submit(n)
	s.Counters.TxPackets += uint64(n)
	s.Counters.TxBytes += bytes
	return int(n)
}

// RxQueued is how many received frames wait in the rx ring.
func (s *Socket) RxQueued() uint32 {
	if s.Rx == nil {
		return 0
	}
	return s.Rx.Occupancy()
}

// TxFree is how many frames the tx ring can take now.
func (s *Socket) TxFree() int {
	if s.Tx == nil {
		return 0
	}
	return int(s.Tx.Free())
}

// TxQueued is how many frames the tx ring holds that the kernel has not
// taken yet.
func (s *Socket) TxQueued() int {
	if s.Tx == nil {
		return 0
	}
	return int(s.Tx.Occupancy())
}

// Complete takes up to len(addrs) sent frames off the completion ring into
// addrs; the caller holds them again.
func (s *Socket) Complete(addrs []uint64) int {
	n, idx := s.Completion.Peek(uint32(len(addrs)))
	if n == 0 {
		return 0
	}
	u := s.u
	for i := uint32(0); i < n; i++ {
		a := s.Completion.Get(idx + i)
		addrs[i] = a
		u.place[a>>u.shift] = PlaceEngine
	}
	s.Completion.Release(n)
	s.Counters.TxCompleted += uint64(n)
	return int(n)
}

// CompleteToFree moves every completed frame straight to the free list and
// returns how many.
func (s *Socket) CompleteToFree() int {
	total := 0
	for {
		n, idx := s.Completion.Peek(256)
		if n == 0 {
			break
		}
		u := s.u
		for i := uint32(0); i < n; i++ {
			a := s.Completion.Get(idx+i) &^ uint64(u.opts.FrameSize-1)
			u.place[a>>u.shift] = PlaceFree
			u.free[u.top] = a
			u.top++
		}
		s.Completion.Release(n)
		total += int(n)
	}
	s.Counters.TxCompleted += uint64(total)
	return total
}

// KickRx wakes the kernel to process the fill ring, if it asked to be woken
// (need_wakeup) or need_wakeup is off (then it never sleeps and this is free).
func (s *Socket) KickRx() {
	if !s.wakeup || !s.Fill.NeedsWakeup() {
		return
	}
	s.Counters.RxWakeups++
	s.kern.wakeRx()
}

// KickTx wakes the kernel to process the tx ring if it asked for it. In copy
// mode the kernel always asks: it sends only inside sendmsg.
func (s *Socket) KickTx() {
	if s.Tx == nil || (s.wakeup && !s.Tx.NeedsWakeup()) {
		return
	}
	s.Counters.TxWakeups++
	s.kern.wakeTx()
}

// TxPending reports whether the tx ring holds frames the kernel has not
// taken yet. In copy mode the kernel sends a few dozen frames per kick, so a
// sender kicks (KickTx) until nothing is pending.
func (s *Socket) TxPending() bool {
	return s.Tx != nil && s.Tx.Occupancy() > 0
}

// Poll waits up to timeoutMs for the rx ring to have packets. It returns
// whether it does. In-memory sockets return at once.
func (s *Socket) Poll(timeoutMs int) bool { return s.kern.poll(timeoutMs) }

// RefillDescs posts the frames of received descriptors back to the fill
// ring, all or nothing, as Refill does for addresses.
func (s *Socket) RefillDescs(descs []Desc) bool {
	n := uint32(len(descs))
	if n == 0 {
		return true
	}
	idx, ok := s.Fill.Reserve(n)
	if !ok {
		s.Counters.FillRingFull++
		return false
	}
	u := s.u
	mask := ^uint64(u.opts.FrameSize - 1)
	for i := range descs {
		a := descs[i].Addr
		f := a >> u.shift
		u.place[f] = PlaceRx
		u.group[f] = s.group
		s.Fill.Set(idx+uint32(i), a&mask)
	}
	s.Fill.Submit(n)
	s.Counters.FillPosted += uint64(n)
	return true
}
