package image

import "hash/crc32"

// castagnoli is the CRC-32C table; hash/crc32 uses the SSE4.2 CRC32
// instruction (amd64) or the ARMv8 CRC extension (arm64) for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// The functions below combine CRCs: given crc(A), crc(B) and len(B) they
// give crc(A‖B) without reading A or B. It is zlib's crc32_combine for the
// Castagnoli polynomial. Polynomials over GF(2) are 32-bit words in
// reflected order: bit 31 is x^0.

// castagnoliReversed is the Castagnoli polynomial, reflected.
const castagnoliReversed = 0x82f63b78

// mulModP returns a·b modulo the CRC polynomial.
func mulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReversed
		} else {
			b >>= 1
		}
	}
	return p
}

// x8nModP returns x^(8n) modulo the CRC polynomial: the operator that
// shifts a CRC over n zero bytes.
func x8nModP(n uint64) uint32 {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 30 // x^1, squared up to x^(2^k) as k grows
	// x^(8n) = x^(n·2^3): start at x^(2^3).
	for range 3 {
		sq = mulModP(sq, sq)
	}
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			p = mulModP(sq, p)
		}
		sq = mulModP(sq, sq)
	}
	return p
}

// crcCombine returns the CRC-32C of A‖B from crcA, crcB and len(B) = n.
func crcCombine(crcA, crcB uint32, n uint64) uint32 {
	return mulModP(x8nModP(n), crcA) ^ crcB
}

// pagesCRC returns the CRC-32C of the whole page-data area from the
// CRC-32C of each chunk: every chunk but the last is chunkBytes long, the
// last one is lastBytes long. O(len(sums)), no page is read.
func pagesCRC(sums []uint32, chunkBytes, lastBytes uint64) uint32 {
	if len(sums) == 0 {
		return 0 // the CRC-32C of no bytes
	}
	crc := sums[0]
	full := x8nModP(chunkBytes)
	for i := 1; i < len(sums); i++ {
		op := full
		if i == len(sums)-1 && lastBytes != chunkBytes {
			op = x8nModP(lastBytes)
		}
		crc = mulModP(op, crc) ^ sums[i]
	}
	return crc
}

func crc32Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }
