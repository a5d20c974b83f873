// Package bpftest holds XDP programs that only the bpf package's tests and
// benchmarks load, kept out of the product package bpf.
//
// testprogs.bpf.c is built from the same bpf/include/parse.h as xnic_steer
// and compiled by bpf2go (see gen.go); the generated testprogs_bpfel.go and
// testprogs_bpfel.o are committed. [LoadTestprogsObjects] loads:
//
//   - xnic_parse_check, which parses a frame and stores the struct xnic_pkt
//     ([TestprogsXnicPkt]) in parse_result[0], for comparing the C parser
//     with flows.Parse field by field;
//   - xnic_raw, steer version 1's data path on the v2 parser: every
//     well-formed IP frame goes to raw_xsks[rx queue], with no flow or rule
//     lookup. The benchmarks' baseline.
//
// It imports nothing of xnic, so bpf's own tests can import it.
package bpftest
