//go:build !amd64 || purego

package offload

const haveAVX2 = false

func sumAVX2(b []byte) uint64 { panic("unreachable: no AVX2 here") }

func copySumAVX2(dst, src []byte) uint64 { panic("unreachable: no AVX2 here") }
