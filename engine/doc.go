// Package engine runs xnic's data path: ports, the XSK sockets on them, the
// workers that poll those sockets, and the statistics the control plane reads.
//
// One worker owns one UMEM and every socket on it: the sockets of all ports
// for one queue index. It polls them in turn, hands each received batch to
// the pipeline, and posts the frames back to the fill ring. The worker's hot
// loop takes no locks and makes no allocations. It counts in plain fields,
// and once per pass publishes them in one snapshot (WorkerStats, through a
// seqlock) that the control plane copies (Worker.Stats, Engine.Stats).
package engine
