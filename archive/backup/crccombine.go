package backup

import "hash/crc32"

// crcShift appends n zero bytes' worth of shifting to a CRC-32C: with it,
// the CRC of A followed by B is crcShift(crc(A), len(B)) ^ crc(B), as
// zlib's crc32_combine computes it. An incremental backup sums a file
// block by block, in the order the blocks lie in the file, although it
// reads the blocks it stores after the ones it does not.
type crcShift [32]uint32

func gf2Times(mat *crcShift, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(mat *crcShift) crcShift {
	var sq crcShift
	for i := range sq {
		sq[i] = gf2Times(mat, mat[i])
	}
	return sq
}

// newCRCShift is the operator for n bytes (n > 0).
func newCRCShift(n int64) crcShift {
	var odd crcShift // one zero bit
	odd[0] = crc32.Castagnoli
	for i := 1; i < 32; i++ {
		odd[i] = 1 << (i - 1)
	}
	even := gf2Square(&odd) // two zero bits
	odd = gf2Square(&even)  // four
	var op crcShift         // identity
	for i := range op {
		op[i] = 1 << i
	}
	for n > 0 {
		even = gf2Square(&odd) // one zero byte, then 2, 4, ... bytes
		if n&1 != 0 {
			op = compose(&even, &op)
		}
		n >>= 1
		if n == 0 {
			break
		}
		odd = gf2Square(&even)
		if n&1 != 0 {
			op = compose(&odd, &op)
		}
		n >>= 1
	}
	return op
}

// compose is a after b.
func compose(a, b *crcShift) crcShift {
	var c crcShift
	for i := range c {
		c[i] = gf2Times(a, b[i])
	}
	return c
}

// combine is the CRC-32C of A then B, from crc(A), crc(B) and the
// operator for len(B).
func (op *crcShift) combine(crcA, crcB uint32) uint32 { return gf2Times(op, crcA) ^ crcB }
