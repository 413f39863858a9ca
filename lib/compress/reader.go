package compress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Reader decodes a zstd stream: any, as the zstd tool writes them, and the
// Writer's frames at little cost. A frame that states a content size of at
// most a chunk is kept in the Reader's buffer while it is read: its raw
// blocks are passed on as they come, with one copy, and if a block that is
// not raw follows, klauspost/compress decodes the whole frame at once and
// the Reader passes on what it had not yet. From the first frame that does
// not state its size, or a larger one, on, the rest of the stream goes
// through klauspost/compress's streaming decoder. (A streaming decoder
// copies a stored block three times, and that cost a tenth of the time of a
// transfer at the speed of loopback.)
type Reader struct {
	br     *bufio.Reader
	opts   []zstd.DOption
	frames *zstd.Decoder // for DecodeAll; made when first needed
	stream *zstd.Decoder // once a frame was too large to keep
	out    []byte        // decoded and not read yet
	buf    []byte        // what out is in
	err    error

	// The frame being read, at the front of the buffer.
	inFrame  bool
	checksum bool   // it ends in a 4-byte checksum
	size     uint64 // the content size it states
	at       int    // where its next block header, or raw data, is
	raw      int    // raw data left at at
	last     bool   // in the last block
	served   uint64 // content passed on so far
}

// readerBuffer holds a whole frame of the Writer (a chunk and its headers).
const readerBuffer = ChunkSize + 64<<10

// NewReader returns a Reader of r that accepts windows (and, with opts,
// anything else klauspost/compress's decoder takes) up to maxWindow bytes.
func NewReader(r io.Reader, maxWindow uint64, opts ...zstd.DOption) *Reader {
	opts = append(opts, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(maxWindow))
	return &Reader{br: bufio.NewReaderSize(r, readerBuffer), opts: opts}
}

// Close releases the decoders.
func (z *Reader) Close() {
	for _, d := range []*zstd.Decoder{z.frames, z.stream} {
		if d != nil {
			d.Close()
		}
	}
}

func (z *Reader) Read(p []byte) (int, error) {
	for {
		switch {
		case z.err != nil:
			return 0, z.err
		case z.stream != nil:
			return z.stream.Read(p)
		case len(z.out) > 0:
			n := copy(p, z.out)
			z.out = z.out[n:]
			return n, nil
		case z.raw > 0:
			b, _ := z.br.Peek(z.at + z.raw) // whole: see block
			n := copy(p, b[z.at:])
			z.at, z.raw, z.served = z.at+n, z.raw-n, z.served+uint64(n)
			if z.raw == 0 && z.last {
				z.endFrame(z.at)
			}
			return n, nil
		case z.inFrame:
			z.err = z.block()
		default:
			z.err = z.frame()
		}
	}
}

// frame reads the header of the next frame, or skips a skippable frame.
func (z *Reader) frame() error {
	head, err := z.br.Peek(4)
	switch {
	case err == io.EOF && len(head) == 0:
		return io.EOF
	case err != nil:
		return unexpected(err)
	}
	magic := binary.LittleEndian.Uint32(head)
	if magic&0xFFFFFFF0 == 0x184D2A50 { // a skippable frame
		head, err := z.br.Peek(8)
		if err != nil {
			return unexpected(err)
		}
		n := int64(binary.LittleEndian.Uint32(head[4:]))
		if _, err := io.CopyN(io.Discard, z.br, 8+n); err != nil {
			return unexpected(err)
		}
		return nil
	}
	if magic != 0xFD2FB528 {
		return errors.New("zstd: not a zstd stream")
	}
	h, err := z.br.Peek(5)
	if err != nil {
		return unexpected(err)
	}
	fhd := h[4]
	if fhd&0x08 != 0 {
		return errors.New("zstd: reserved bit set in a frame header")
	}
	singleSegment := fhd&0x20 != 0
	at := 5
	if !singleSegment {
		at++ // window descriptor
	}
	at += []int{0, 1, 2, 4}[fhd&3] // dictionary ID
	fcsSize := []int{0, 2, 4, 8}[fhd>>6]
	if fcsSize == 0 && singleSegment {
		fcsSize = 1
	}
	if h, err = z.br.Peek(at + fcsSize); err != nil {
		return unexpected(err)
	}
	var size uint64
	switch fcsSize {
	case 1:
		size = uint64(h[at])
	case 2:
		size = uint64(binary.LittleEndian.Uint16(h[at:])) + 256
	case 4:
		size = uint64(binary.LittleEndian.Uint32(h[at:]))
	case 8:
		size = binary.LittleEndian.Uint64(h[at:])
	}
	if fcsSize == 0 || size > ChunkSize || fhd&3 != 0 {
		// Too large to keep, or it needs a dictionary (which decoding
		// will refuse): stream the rest.
		z.stream, err = zstd.NewReader(z.br, z.opts...)
		return err
	}
	z.inFrame, z.checksum, z.size, z.at, z.served, z.last = true, fhd&0x04 != 0, size, at+fcsSize, 0, false
	return nil
}

// endFrame lets the frame, n bytes, leave the buffer.
func (z *Reader) endFrame(n int) {
	z.br.Discard(n)
	z.inFrame, z.at, z.raw, z.last = false, 0, 0, false
}

// block reads the next block header of the frame: a raw block is passed on
// as it is; any other kind has the whole frame decoded at once.
func (z *Reader) block() error {
	if z.at+blockHeader > readerBuffer {
		return errors.New("zstd: a frame larger than its content")
	}
	h, err := z.br.Peek(z.at + blockHeader)
	if err != nil {
		return unexpected(err)
	}
	bh := uint32(h[z.at]) | uint32(h[z.at+1])<<8 | uint32(h[z.at+2])<<16
	last, kind, n := bh&1 == 1, (bh>>1)&3, int(bh>>3)
	switch {
	case kind == 3:
		return errors.New("zstd: reserved block type")
	case kind != 0:
		return z.decodeFrame()
	case n > maxBlock:
		return fmt.Errorf("zstd: block of %d bytes (limit %d)", n, maxBlock)
	case z.served+uint64(n) > z.size:
		return fmt.Errorf("zstd: a frame with more than the %d bytes it states", z.size)
	case z.at+blockHeader+n > readerBuffer:
		return errors.New("zstd: a frame larger than its content")
	}
	// The block whole, so that Read can pass it on from the buffer.
	if _, err := z.br.Peek(z.at + blockHeader + n); err != nil {
		return unexpected(err)
	}
	if last && z.checksum { // only klauspost/compress checks it
		return z.decodeFrame()
	}
	if last && z.served+uint64(n) != z.size {
		return fmt.Errorf("zstd: a frame of %d bytes states %d", z.served+uint64(n), z.size)
	}
	z.at += blockHeader
	z.raw, z.last = n, last
	if last && n == 0 {
		z.endFrame(z.at)
	}
	return nil
}

// decodeFrame decodes the frame at the front of the buffer at once and
// queues what of it was not passed on yet.
func (z *Reader) decodeFrame() error {
	// Find the frame's end.
	at := z.at
	for {
		if at+blockHeader > readerBuffer {
			return errors.New("zstd: a frame larger than its content")
		}
		h, err := z.br.Peek(at + blockHeader)
		if err != nil {
			return unexpected(err)
		}
		bh := uint32(h[at]) | uint32(h[at+1])<<8 | uint32(h[at+2])<<16
		n := int(bh >> 3)
		if (bh>>1)&3 == 1 {
			n = 1 // RLE: one byte
		}
		at += blockHeader + n
		if bh&1 == 1 {
			break
		}
	}
	if z.checksum {
		at += 4
	}
	if at > readerBuffer {
		return errors.New("zstd: a frame larger than its content")
	}
	frame, err := z.br.Peek(at)
	if err != nil {
		return unexpected(err)
	}
	if z.frames == nil {
		if z.frames, err = zstd.NewReader(nil, z.opts...); err != nil {
			return err
		}
	}
	if z.buf, err = z.frames.DecodeAll(frame, z.buf[:0]); err != nil {
		return err
	}
	if uint64(len(z.buf)) < z.served {
		return errors.New("zstd: a frame that decodes to less than its raw blocks")
	}
	z.out = z.buf[z.served:]
	z.endFrame(at)
	return nil
}

// unexpected says that the stream ended inside a frame.
func unexpected(err error) error {
	if err == io.EOF {
		return fmt.Errorf("zstd: %w", io.ErrUnexpectedEOF)
	}
	return err
}
