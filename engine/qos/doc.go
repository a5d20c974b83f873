// Package qos is the per-class quality of service of xnic's send path: token
// buckets, a WRED dropper with ECN marking, srTCM/trTCM policers, and a
// scheduler that serves class queues by strict priority between levels and
// deficit round robin by bytes within a level. It learns from DPDK's QoS
// framework (lib/sched, lib/meter) and keeps its shape: everything is sized
// at construction, nothing allocates or locks afterwards, one worker owns a
// scheduler, and every call takes the time as int64 nanoseconds from the
// caller's clock, so tests run on a simulated clock and nothing here reads
// the time itself.
//
// A descriptor's life through a Scheduler: the worker has copied a guest's
// frame into UMEM and holds its Item (UMEM address, length, flow), never the
// bytes. Enqueue meters it with the class's policer if any (red: dropped),
// asks the class's WRED for a verdict on the class queue's depth (early drop,
// or Marked, which tells the caller to set CE in the frame with MarkCE), and
// puts the descriptor in the class's fixed ring unless it is full (tail
// drop). On a drop the frame still belongs to the caller, who frees it.
// Dequeue picks the class to serve (the highest level with a class that is
// backlogged and whose token bucket, and the scheduler's aggregate bucket,
// hold enough tokens for its head; DRR among that level's classes), takes
// the head's bytes from both buckets and hands the descriptor back; the
// caller puts it on the tx ring, and the frame returns through the
// completion ring as before. When classes are backlogged but shaped,
// Dequeue returns nothing and NextEligible says when to try again.
package qos

import "errors"

// Errors of the constructors, wrapped with the field and value at fault.
var (
	ErrBurst      = errors.New("burst out of range")
	ErrRate       = errors.New("rate out of range")
	ErrThresholds = errors.New("red thresholds need 0 < min < max")
	ErrMaxP       = errors.New("red max_p must be in (0, 1]")
	ErrWq         = errors.New("red wq_log2 must be in 1..12")
	ErrClasses    = errors.New("a scheduler takes 1 to 16 classes")
	ErrWeight     = errors.New("weight must be at least 1")
	ErrQueueLen   = errors.New("queue length must be a power of two in 1..65536")
)
