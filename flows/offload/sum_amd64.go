//go:build !purego

package offload

import "golang.org/x/sys/cpu"

// haveAVX2 selects the vector checksum loop.
var haveAVX2 = cpu.X86.HasAVX2

// sumAVX2 is in sum_amd64.s. len(b) must be a multiple of 64.
//
//go:noescape
func sumAVX2(b []byte) uint64

// copySumAVX2 is in sum_amd64.s. len(src) must be a multiple of 64 and
// len(dst) at least len(src).
//
//go:noescape
func copySumAVX2(dst, src []byte) uint64
