package compress

import "encoding/binary"

// A stored chunk is a zstd frame that holds the data as it is (RFC 8878,
// 3.1.1): a single-segment frame that states its content size in 4 bytes,
// made of raw blocks of at most 128 KiB, without a checksum. The Writer
// builds it in place as the data comes, a block header before each block's
// data, so that storing costs no more than one copy of the data.

const (
	// maxBlock is the largest block of a zstd frame (RFC 8878, 3.1.1.2.4).
	maxBlock = 128 << 10
	// storedHeader is the size of a stored frame's header: the magic
	// number, the frame header descriptor and a 4-byte content size.
	storedHeader = 4 + 1 + 4
	// blockHeader is the size of a block's header.
	blockHeader = 3
)

// storedSize bounds the size of the frame that stores n bytes.
func storedSize(n int) int { return storedHeader + blockHeader*(n/maxBlock+1) + n }

// stored is a stored frame being built.
type stored struct {
	buf     []byte
	n       int // data bytes so far
	blockAt int // where the current block's header is
}

// begin starts the frame in buf (which it empties).
func (s *stored) begin(buf []byte) {
	const singleSegment, size4 = 1 << 5, 2 << 6
	buf = binary.LittleEndian.AppendUint32(buf[:0], 0xFD2FB528)
	s.buf = append(buf, size4|singleSegment, 0, 0, 0, 0)
	s.n, s.blockAt = 0, -1
}

// write appends as much of p as fits in the current block (starting one if
// need be) and returns how much that was.
func (s *stored) write(p []byte) int {
	if s.n%maxBlock == 0 {
		if s.blockAt >= 0 {
			s.seal(false)
		}
		s.blockAt = len(s.buf)
		s.buf = append(s.buf, 0, 0, 0)
	}
	m := min(len(p), maxBlock-s.n%maxBlock)
	s.buf = append(s.buf, p[:m]...)
	s.n += m
	return m
}

// seal writes the current block's header: raw, its size, and whether it
// is the last.
func (s *stored) seal(last bool) {
	h := uint32(len(s.buf)-s.blockAt-blockHeader) << 3
	if last {
		h |= 1
	}
	s.buf[s.blockAt], s.buf[s.blockAt+1], s.buf[s.blockAt+2] = byte(h), byte(h>>8), byte(h>>16)
}

// end completes the frame and returns it.
func (s *stored) end() []byte {
	if s.blockAt < 0 { // no data: one empty last block
		s.blockAt = len(s.buf)
		s.buf = append(s.buf, 0, 0, 0)
	}
	s.seal(true)
	binary.LittleEndian.PutUint32(s.buf[5:], uint32(s.n))
	return s.buf
}

// storedData returns how much data the stored frame f holds.
func storedData(f []byte) int { return int(binary.LittleEndian.Uint32(f[5:])) }
