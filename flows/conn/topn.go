package conn

// Entry is one connection in a TopN answer: its handle and a copy of its
// context.
type Entry struct {
	Handle  Handle
	Context Context
}

// TopN scans the table and returns the n connections with the most bytes
// (both directions), most first, ties broken by handle. It reuses dst's
// storage and allocates only when cap(dst) < n. It reads the table's
// copies: call Cache.Sync first when a cache fronts the table, and call it
// on the worker that owns the table, never concurrently with it.
func (t *Table) TopN(n int, dst []Entry) []Entry {
	dst = dst[:0]
	if n <= 0 {
		return dst
	}
	// A min-heap of the best n seen so far: dst[0] is the weakest.
	for h := range t.ctx {
		c := &t.ctx[h]
		if c.flags&flagInUse == 0 {
			continue
		}
		e := Entry{Handle: Handle(h), Context: *c}
		if len(dst) < n {
			dst = append(dst, e)
			heapUp(dst, len(dst)-1)
			continue
		}
		if entryLess(&dst[0], &e) {
			dst[0] = e
			heapDown(dst, 0, len(dst))
		}
	}
	// Heap sort: pop the weakest to the back, leaving the strongest first.
	for end := len(dst) - 1; end > 0; end-- {
		dst[0], dst[end] = dst[end], dst[0]
		heapDown(dst, 0, end)
	}
	return dst
}

// entryLess orders entries weakest first: fewer bytes, then higher handle.
func entryLess(a, b *Entry) bool {
	ab, bb := a.Context.Bytes(), b.Context.Bytes()
	if ab != bb {
		return ab < bb
	}
	return a.Handle > b.Handle
}

func heapUp(h []Entry, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !entryLess(&h[i], &h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func heapDown(h []Entry, i, n int) {
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && entryLess(&h[r], &h[l]) {
			m = r
		}
		if !entryLess(&h[m], &h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
