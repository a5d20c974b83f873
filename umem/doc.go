// Package umem owns AF_XDP memory: the UMEM, its frame allocator, the four
// rings and the XSK sockets bound to them. It holds no packet logic.
//
// # Buffer lifecycle
//
// A UMEM is one anonymous mapping cut into fixed-size frames (2048 or 4096
// bytes). Every frame is, at any instant, in exactly one place. It starts on
// the free list. The application moves it to a socket's fill ring, lending it
// to the kernel, which writes a received packet into it and posts its
// descriptor on the rx ring. The application peeks the rx ring and now holds
// the frame (the engine place: a GRO chain, a queue, a guest). From there it
// goes back to a fill ring to receive again, to a tx ring to be sent (the
// kernel then hands it back on the completion ring), or to the free list.
// Closing a socket takes back every frame it had lent. [UMEM.Audit] counts
// the places and reports any frame that is nowhere or in two places.
//
// # Rings
//
// The rings mirror libxdp's API. A producer ring ([FillRing], [TxRing])
// reserves slots all or nothing with Reserve, writes them, then publishes
// with Submit. A consumer ring ([RxRing], [CompletionRing]) takes up to n
// entries with Peek and hands them back with Release; Cancel undoes a Peek.
// Indices are free-running uint32 values, masked on access, so they wrap at
// 2^32 without special cases. Each shared word has one writer, and its type
// says which: the application stores only to its own index (a release), and
// only loads the kernel's index and flags (an acquire). Each side keeps a
// cached copy of the other's index and refreshes it only when the cache says
// the ring is full or empty.
//
// # Kernels
//
// A socket's rings are shared memory and its data path is the same whoever
// is on the other side. The other side, chosen when the socket is made, is
// called only to wake it (need_wakeup), to wait on it and to read its
// statistics: the Linux kernel through the socket's descriptor, or, for
// sockets made with [NewSimSocket] over a [NewInMemory] UMEM, a [SimKernel]
// that tests drive by hand.
package umem
