// Package pipe moves one byte stream over an authenticated stream and proves
// on both sides that it arrived whole.
//
// The sender offers a Header, the receiver answers ACCEPT or REJECT, then the
// data follows in DATA frames, closed by an END frame with the byte count and
// the XXH3-128 digest of all data. The receiver checks both, stores the data
// and answers ACK; only then does Send return nil. Heartbeats flow both ways
// whenever a side has been silent for a while, so a vanished peer is noticed
// within seconds.
package pipe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/pcp-dev/pcp/lib/frame"
)

// ChunkSize is the largest DATA payload the sender writes.
const ChunkSize = frame.MaxPayload

// Options tune a transfer. The zero value is usable.
type Options struct {
	// Timing sets heartbeat and timeouts; zero fields take the defaults.
	Timing Timing
	// Progress, if set, is called with the running byte count.
	Progress func(n int64)
	// Accept (receiver only) decides on the header; an error rejects the
	// transfer and is sent to the sender as the reason. Nil accepts all.
	Accept func(Header) error
	// Commit (receiver only) is called once the data is verified and before
	// the ACK: flush and move into place here. An error aborts the transfer.
	Commit func() error
	// Accepted, if set, is called when the receiver has accepted and the
	// data phase begins.
	Accepted func()
	// Note (receiver only) goes with the ACCEPT: what this receiver also
	// takes, as space-separated words (files.NoteTar). Older receivers send
	// none.
	Note string
	// Noted (sender only), if set, is told the receiver's note (possibly
	// empty) when it accepts, before any data is read from the input.
	Noted func(note string)
	// Delivered (sender only), if set, is called with the receiver's count
	// of the bytes it has written out, each time it reports it (about every
	// ProgressInterval while the data flows), and the count of bytes sent
	// when the report arrived: the difference is what the link and the
	// buffers on the way hold.
	Delivered func(delivered, sent int64)
}

// Send offers h, then streams src to the receiver. It returns the number of
// bytes sent, and a nil error only after the receiver acknowledged that the
// count and digest matched and the data was stored.
func Send(ctx context.Context, s Stream, h Header, src io.Reader, opt Options) (n int64, err error) {
	c := newConn(ctx, s, opt.Timing)
	stop := c.start()
	defer stop()
	defer func() {
		if err != nil {
			c.abort(err)
		}
	}()

	h.Progress = true
	hb, err := h.marshal()
	if err != nil {
		return 0, err
	}
	if err := c.send(frame.Header, hb); err != nil {
		return 0, fmt.Errorf("send header: %w", err)
	}
	t, p, err := c.nextBefore(time.Now().Add(c.timing.Decision))
	if errors.Is(err, errNoStep) {
		return 0, &StalledError{Step: "has not accepted or refused the transfer", For: c.timing.Decision}
	}
	if err != nil {
		return 0, fmt.Errorf("wait for the receiver to accept: %w", err)
	}
	switch t {
	case frame.Accept:
		if opt.Noted != nil {
			opt.Noted(frame.Text(p))
		}
		if opt.Accepted != nil {
			opt.Accepted()
		}
	case frame.Reject:
		return 0, &RejectedError{Reason: frame.Text(p)}
	default:
		return 0, protocolErrorf("got %v frame, want ACCEPT or REJECT", t)
	}

	var endSent atomic.Bool
	var sent atomic.Int64 // bytes handed to the stream; the receiver cannot report more
	// This goroutine is the only reader from here on: peer.done closes when
	// it has read the ACK, or failed.
	peer := &reader{done: make(chan struct{})}
	c.reader = peer.done
	go func() {
		err := awaitAck(c, &endSent, &sent, opt.Delivered)
		// Unblock a data write stuck on a peer that is gone. Not when our own
		// context ended: the watch in start already bounds the writes by
		// AbortWait, and cutting the stream now would tear a DATA frame in
		// half and fail abort's ERROR frame, so the receiver would see a
		// truncated stream instead of "interrupted".
		if err != nil && ctx.Err() == nil {
			c.unblockWrites(0)
		}
		peer.err = err
		close(peer.done)
	}()

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	chunks, free := readChunks(readCtx, src)
	digest := newDigest()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-peer.done:
			if peer.err == nil {
				return n, protocolErrorf("ACK before END")
			}
			return n, peer.err
		case ch := <-chunks:
			if ch.n > 0 {
				data := ch.buf[frame.HeaderSize : frame.HeaderSize+ch.n]
				digest.Write(data)
				frame.PutHeader(ch.buf, frame.Data, ch.n)
				sent.Add(int64(ch.n))
				c.extendWriteDeadline()
				if err := c.sendFramed(ch.buf[:frame.HeaderSize+ch.n]); err != nil {
					return n, writeError(ctx, err, peer, c.timing.Stall)
				}
				n += int64(ch.n)
				if opt.Progress != nil {
					opt.Progress(n)
				}
			}
			free <- ch.buf
			if ch.err == io.EOF {
				done = true
			} else if ch.err != nil {
				return n, fmt.Errorf("read input: %w", ch.err)
			}
		}
	}

	end := make([]byte, 0, endSize)
	end = binary.BigEndian.AppendUint64(end, uint64(n))
	end = digest.Sum(end)
	endSent.Store(true)
	c.extendWriteDeadline()
	if err := c.send(frame.End, end); err != nil {
		return n, writeError(ctx, err, peer, c.timing.Stall)
	}
	// The receiver syncs what it wrote before it acknowledges; its
	// writeback began while the data arrived, so that takes seconds.
	select {
	case <-peer.done:
		if peer.err != nil {
			return n, peer.err
		}
	case <-ctx.Done():
		return n, ctx.Err()
	case <-time.After(c.timing.Stall):
		return n, &StalledError{Step: "has not acknowledged the data", For: c.timing.Stall}
	}
	// The receiver waits for this EOF before it closes its side: only now
	// that the ACK is in, so that no close of its can drop the ACK on the way.
	if err := s.CloseWrite(); err != nil {
		return n, fmt.Errorf("close stream for writing: %w", err)
	}
	waitEOF(c, c.timing.AbortWait)
	return n, nil
}

// reader is the outcome of the goroutine that reads the receiver's frames.
type reader struct {
	done chan struct{} // closed once err is set
	err  error
}

// awaitAck reads the receiver's frames during the data phase: heartbeats
// and RECEIVED counts, passed to delivered, until the ACK that must follow
// END. A count may not go back, nor exceed what was sent.
func awaitAck(c *conn, endSent *atomic.Bool, sent *atomic.Int64, delivered func(delivered, sent int64)) error {
	var last int64
	for {
		t, p, err := c.next()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("the receiver closed the stream without acknowledging the data")
		case err != nil:
			return err
		case t == frame.Received:
			if len(p) != 8 {
				return protocolErrorf("RECEIVED frame of %d bytes", len(p))
			}
			n, out := int64(binary.BigEndian.Uint64(p)), sent.Load()
			if n < last || n > out {
				return protocolErrorf("the receiver reports %d bytes written, after %d, with %d sent", n, last, out)
			}
			last = n
			if delivered != nil {
				delivered(n, out)
			}
			continue
		case t == frame.Ack && endSent.Load():
			return nil
		}
		return protocolErrorf("unexpected %v frame from the receiver", t)
	}
}

// writeError explains a failed data write: usually the peer's own failure,
// which the reader learns at the same moment; else, when the write timed
// out, a receiver that took no data for stall.
func writeError(ctx context.Context, err error, peer *reader, stall time.Duration) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-peer.done:
		if peer.err != nil {
			return peer.err
		}
	case <-time.After(time.Second):
	}
	if isTimeout(err) {
		return &StalledError{Step: "has taken no data", For: stall}
	}
	return fmt.Errorf("send data: %w", err)
}

type chunk struct {
	buf []byte // frame.HeaderSize bytes of room, then n bytes of data
	n   int
	err error
}

// firstChunk is the most the first DATA frame carries; each next one may
// carry twice as much, up to ChunkSize. A new connection's congestion window
// is about 14 KiB, so a whole first chunk of ChunkSize would take four or
// five round trips to arrive, and the receiver writes a frame only once it
// is whole.
const firstChunk = 16 << 10

// readChunks reads src in a goroutine, into a few buffers that the caller
// hands back through free, so that reading the input and writing the stream
// overlap.
func readChunks(ctx context.Context, src io.Reader) (<-chan chunk, chan<- []byte) {
	const buffers = 3
	chunks := make(chan chunk)
	free := make(chan []byte, buffers)
	for range buffers {
		free <- make([]byte, frame.HeaderSize+ChunkSize)
	}
	go func() {
		limit := firstChunk
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			n, err := src.Read(buf[frame.HeaderSize : frame.HeaderSize+limit])
			limit = min(2*limit, ChunkSize)
			select {
			case chunks <- chunk{buf: buf, n: n, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return chunks, free
}
