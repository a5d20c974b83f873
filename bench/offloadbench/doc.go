// Package offloadbench measures xnic's software offload stages on one core:
// how many MTU-sized TCP segments per second GRO merges and GSO writes, so
// that `xnic bench offload` can set them beside the raw receive rate of the
// same frames, measured in the same run. It is a normal package, so that the
// CLI can run it without the test framework.
//
// # Traffic
//
// A bulk TCP transfer the way a Linux sender puts it on a 1500-byte MTU:
// Ethernet, IPv4 or IPv6, and TCP with NOP, NOP and timestamps (a 32-byte
// header), so the MSS is 1448 over IPv4 and 1428 over IPv6 and every frame is
// 1514 bytes. The train is built by writing 64 KB TCP segments (SegsPerTSO
// segments' worth of payload, a pattern that differs from byte to byte, valid
// checksums) and splitting them with offload.GSO into MTU frames, which are
// then parsed and verified before anything is measured. Consecutive large
// segments continue the sequence numbers and IPv4 IDs, so the frames form
// one unbroken stream.
//
// # Stages
//
//   - GRO: offload.GRO over Batch consecutive frames of the train, already
//     parsed, with a Flush after each batch, as a receive worker does. Each
//     aggregate taken from GRO has its rewritten head restored from a
//     pristine copy, so the same frames go round again. Two modes:
//     "verify+full" (the default options: every checksum verified, the
//     aggregate's checksum written in full) and "trust+validated"
//     (checksums vouched for by the caller, the aggregate only marked
//     validated). At MSS 1448 an
//     aggregate stops at 45 segments (the 64 KB limit), so batches of 64
//     give aggregates of 45 and 19 segments.
//   - GSO: offload.GSO splitting one 64 KB segment into SegsPerTSO frames,
//     over and over, with full checksums ("full") or the pseudo-header sum
//     only ("partial", for a device that completes it).
//
// Both stages run for both families: eight configurations.
//
// # Measurement
//
// Run builds every configuration, runs each once untimed, and then measures
// them Rounds times, the configurations taking turns round by round so that
// they see the same machine load. A measurement runs its stage for Duration
// on one goroutine locked to its OS thread, pinned to CPU (the CPU `xnic
// bench` gives its receivers, by default). The timed loops allocate nothing;
// the clock is read every few batches. A row reports the median of the
// rounds' rates in million segments per second, the slowest and the fastest
// round, and the segments per aggregate (GRO) or per large segment (GSO).
package offloadbench
