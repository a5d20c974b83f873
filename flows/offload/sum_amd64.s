//go:build !purego

#include "textflag.h"

// func sumAVX2(b []byte) uint64
//
// Sums b, whose length is a multiple of 64, as little-endian 32-bit words
// into 64-bit lanes: four accumulators of four lanes each, no carries to
// chain. The fold of the result is the ones'-complement sum of b's 16-bit
// little-endian words, since 2^16 is 1 modulo 0xffff.
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

	// 128 bytes an iteration while they last, then one 64-byte step.
	SUBQ $128, CX
	JB   tail

loop128:
	VPMOVZXDQ 0(SI), Y4
	VPMOVZXDQ 16(SI), Y5
	VPMOVZXDQ 32(SI), Y6
	VPMOVZXDQ 48(SI), Y7
	VPMOVZXDQ 64(SI), Y8
	VPMOVZXDQ 80(SI), Y9
	VPMOVZXDQ 96(SI), Y10
	VPMOVZXDQ 112(SI), Y11
	VPADDQ    Y4, Y0, Y0
	VPADDQ    Y5, Y1, Y1
	VPADDQ    Y6, Y2, Y2
	VPADDQ    Y7, Y3, Y3
	VPADDQ    Y8, Y0, Y0
	VPADDQ    Y9, Y1, Y1
	VPADDQ    Y10, Y2, Y2
	VPADDQ    Y11, Y3, Y3
	ADDQ      $128, SI
	SUBQ      $128, CX
	JAE       loop128

tail:
	ADDQ $128, CX
	CMPQ CX, $64
	JB   done
	VPMOVZXDQ 0(SI), Y4
	VPMOVZXDQ 16(SI), Y5
	VPMOVZXDQ 32(SI), Y6
	VPMOVZXDQ 48(SI), Y7
	VPADDQ    Y4, Y0, Y0
	VPADDQ    Y5, Y1, Y1
	VPADDQ    Y6, Y2, Y2
	VPADDQ    Y7, Y3, Y3

done:
	VPADDQ       Y1, Y0, Y0
	VPADDQ       Y3, Y2, Y2
	VPADDQ       Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDQ       X1, X0, X0
	VMOVQ        X0, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET

// func copySumAVX2(dst, src []byte) uint64
//
// Copies src, whose length is a multiple of 64, to dst (at least as long)
// and returns src's sum as sumAVX2 does: one pass for both.
TEXT ·copySumAVX2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

cloop:
	CMPQ      CX, $64
	JB        cdone
	VMOVDQU   0(SI), Y4
	VMOVDQU   32(SI), Y5
	VMOVDQU   Y4, 0(DI)
	VMOVDQU   Y5, 32(DI)
	VPMOVZXDQ 0(SI), Y6
	VPMOVZXDQ 16(SI), Y7
	VPMOVZXDQ 32(SI), Y8
	VPMOVZXDQ 48(SI), Y9
	VPADDQ    Y6, Y0, Y0
	VPADDQ    Y7, Y1, Y1
	VPADDQ    Y8, Y2, Y2
	VPADDQ    Y9, Y3, Y3
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $64, CX
	JMP       cloop

cdone:
	VPADDQ       Y1, Y0, Y0
	VPADDQ       Y3, Y2, Y2
	VPADDQ       Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDQ       X1, X0, X0
	VMOVQ        X0, AX
	VZEROUPPER
	MOVQ         AX, ret+48(FP)
	RET
