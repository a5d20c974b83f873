//go:build !purego

#include "textflag.h"

// The vector loops read 16-bit little-endian words, flip each word's top
// bit (w ^ 0x8000, which read as signed is w - 32768) and let VPMADDWD add
// adjacent pairs into signed 32-bit lanes. Flipping makes the signed
// multiply-add exact for unsigned words: the sum of the words is the sum of
// the lanes plus 32768 per word, which is added back at the end. Per 32
// bytes that is a load-xor, a multiply-add and an add, where widening loads
// took five operations. A lane grows by at most 65536 per 128 bytes (per 64
// in the copy loop, which uses two accumulators), so the callers keep a
// call under maxVectorChunk bytes.
//
// Y15 holds 0x8000 in every word, Y14 holds 1 in every word.
#define CONSTS \
	MOVL         $0x80008000, AX \
	VMOVD        AX, X15 \
	VPBROADCASTD X15, Y15 \
	MOVL         $0x00010001, AX \
	VMOVD        AX, X14 \
	VPBROADCASTD X14, Y14

// REDUCE sums the signed dword lanes of Y0..Y3 into AX. A lane holds at
// most 2^27 in magnitude under maxVectorChunk, so the four add up in
// dwords before they are widened.
#define REDUCE \
	VPADDD       Y1, Y0, Y0 \
	VPADDD       Y3, Y2, Y2 \
	VPADDD       Y2, Y0, Y0 \
	VPMOVSXDQ    X0, Y4 \
	VEXTRACTI128 $1, Y0, X0 \
	VPMOVSXDQ    X0, Y5 \
	VPADDQ       Y5, Y4, Y4 \
	VEXTRACTI128 $1, Y4, X5 \
	VPADDQ       X5, X4, X4 \
	VPSHUFD      $0x4e, X4, X5 \
	VPADDQ       X5, X4, X4 \
	VMOVQ        X4, AX \
	VZEROUPPER

// func sumAVX2(b []byte) uint64
//
// Returns the plain sum of b's 16-bit little-endian words (its fold is
// their ones'-complement sum). len(b) must be a multiple of 64 and at most
// maxVectorChunk.
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	MOVQ CX, DX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	CONSTS

	// 128 bytes an iteration while they last, then one 64-byte step.
	SUBQ $128, CX
	JB   tail

loop128:
	VPXOR    0(SI), Y15, Y4
	VPXOR    32(SI), Y15, Y5
	VPXOR    64(SI), Y15, Y6
	VPXOR    96(SI), Y15, Y7
	VPMADDWD Y14, Y4, Y4
	VPMADDWD Y14, Y5, Y5
	VPMADDWD Y14, Y6, Y6
	VPMADDWD Y14, Y7, Y7
	VPADDD   Y4, Y0, Y0
	VPADDD   Y5, Y1, Y1
	VPADDD   Y6, Y2, Y2
	VPADDD   Y7, Y3, Y3
	ADDQ     $128, SI
	SUBQ     $128, CX
	JAE      loop128

tail:
	ADDQ $128, CX
	CMPQ CX, $64
	JB   done
	VPXOR    0(SI), Y15, Y4
	VPXOR    32(SI), Y15, Y5
	VPMADDWD Y14, Y4, Y4
	VPMADDWD Y14, Y5, Y5
	VPADDD   Y4, Y0, Y0
	VPADDD   Y5, Y1, Y1

done:
	REDUCE
	SHLQ $14, DX // 32768 per word, len/2 words
	ADDQ DX, AX
	MOVQ AX, ret+24(FP)
	RET

// func copySumAVX2(dst, src []byte) uint64
//
// Copies src to dst (at least as long) and returns src's sum as sumAVX2
// does, in one pass. len(src) must be a multiple of 64 and at most
// maxVectorChunk.
TEXT ·copySumAVX2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	MOVQ CX, DX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	CONSTS

cloop:
	CMPQ     CX, $64
	JB       cdone
	VMOVDQU  0(SI), Y4
	VMOVDQU  32(SI), Y5
	VMOVDQU  Y4, 0(DI)
	VMOVDQU  Y5, 32(DI)
	VPXOR    Y15, Y4, Y4
	VPXOR    Y15, Y5, Y5
	VPMADDWD Y14, Y4, Y4
	VPMADDWD Y14, Y5, Y5
	VPADDD   Y4, Y0, Y0
	VPADDD   Y5, Y1, Y1
	ADDQ     $64, SI
	ADDQ     $64, DI
	SUBQ     $64, CX
	JMP      cloop

cdone:
	REDUCE
	SHLQ $14, DX
	ADDQ DX, AX
	MOVQ AX, ret+48(FP)
	RET
