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
	// Holding (receiver only), if set, is asked after Accept what the
	// receiver already holds of the offer (at most MaxHoldings bytes, in
	// a form its application knows: pcp's partial files), for a sender
	// that takes it; an error rejects the transfer as Accept's does.
	Holding func(Header) ([]byte, error)
	// Holds (sender only), if set, is told what the receiver said it holds
	// (nil for nothing) when it accepts, before Noted.
	Holds func(holdings []byte)
	// Reconnect, if set, is called when the stream breaks during the data
	// phase (the peer stopped answering, the stream was reset or closed
	// early): it returns a new stream to the same peer, already proven to
	// be it, or an error once none came in time. The transfer goes on over
	// the new stream where the receiver stands.
	Reconnect func(ctx context.Context) (Stream, error)
	// Lost, if set, is told why the stream broke, before Reconnect.
	Lost func(cause error)
	// Resumed, if set, is told when the data goes on over a new stream:
	// how long after the break, and at which count of bytes.
	Resumed func(after time.Duration, at int64)
	// Delivered (sender only), if set, is called with the receiver's count
	// of the bytes it has written out, each time it reports it (about every
	// ProgressInterval while the data flows), and the count of bytes sent
	// when the report arrived: the difference is what the link and the
	// buffers on the way hold.
	Delivered func(delivered, sent int64)
	// Lane (receiver only), if set, opens a data path of the pipe's own
	// beside the stream, for a sender that takes one: its offer goes to the
	// sender before the ACCEPT. Nil (or an error) keeps the data on the
	// stream, as does a sender that does not dial it. The pipe closes the
	// listener, resets the lane it takes when the stream is reset, and
	// closes the lane when the transfer ends.
	Lane func() (LaneListener, error)
	// DialLane (sender only), if set, takes a receiver's lane offer within
	// ctx: it dials the lane, calls announce once it is connected (the
	// pipe tells the receiver, which then takes it), and returns the lane
	// once both ends have greeted each other. An error before announce
	// keeps the data on the stream; after it, the receiver waits on the
	// lane, and the transfer goes on as after a break (through Reconnect).
	// Then the rest of the transfer goes over the lane, and the stream
	// stays idle; the pipe resets the lane when the stream is reset, and
	// closes it when the transfer ends.
	DialLane func(ctx context.Context, offer []byte, announce func() error) (Stream, error)
}

// Send offers h, then streams src to the receiver. It returns the number of
// bytes sent, and a nil error only after the receiver acknowledged that the
// count and digest matched and the data was stored.
//
// With opt.Reconnect set, a stream that breaks during the data phase is
// replaced: the sender holds what the receiver has not yet reported
// written out (at most HeldLimit), and on the new stream goes on from the
// receiver's count.
func Send(ctx context.Context, s Stream, h Header, src io.Reader, opt Options) (n int64, err error) {
	snd := &sender{ctx: ctx, opt: opt, reports: make(chan struct{}, 1)}
	snd.use(newConn(ctx, s, opt.Timing))
	defer func() {
		snd.stop()
		if err != nil {
			snd.c.abort(err)
		}
		snd.lane.close()
	}()
	c := snd.c

	h.Progress = true
	h.Holdings = opt.Holds != nil
	h.Lane = opt.DialLane != nil
	hb, err := h.marshal()
	if err != nil {
		return 0, err
	}
	if err := c.send(frame.Header, hb); err != nil {
		return 0, fmt.Errorf("send header: %w", err)
	}
	decided := time.Now().Add(c.timing.Decision)
	var holdings, lane []byte
	for {
		t, p, err := c.nextBefore(decided)
		if errors.Is(err, errNoStep) {
			return 0, &StalledError{Step: "has not accepted or refused the transfer", For: c.timing.Decision}
		}
		if err != nil {
			return 0, fmt.Errorf("wait for the receiver to accept: %w", err)
		}
		if t == frame.Have && opt.Holds != nil {
			if len(holdings)+len(p) > MaxHoldings {
				return 0, protocolErrorf("the receiver holds more than %d bytes of HAVE frames", MaxHoldings)
			}
			holdings = append(holdings, p...)
			continue
		}
		if t == frame.Lane && opt.DialLane != nil && lane == nil {
			lane = append([]byte{}, p...)
			continue
		}
		if err := decision(t, p, holdings, opt); err != nil {
			return 0, err
		}
		if lane != nil {
			if err := snd.takeLane(lane); err != nil {
				return 0, err
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		return snd.run(src)
	}
}

// MaxHoldings bounds the HAVE frames of one transfer together.
const MaxHoldings = 16 << 20

// decision takes the receiver's answer to the header: nil once it accepted.
func decision(t frame.Type, p, holdings []byte, opt Options) error {
	switch t {
	case frame.Accept:
		if opt.Holds != nil {
			opt.Holds(holdings)
		}
		if opt.Noted != nil {
			opt.Noted(frame.Text(p))
		}
		if opt.Accepted != nil {
			opt.Accepted()
		}
		return nil
	case frame.Reject:
		return &RejectedError{Reason: frame.Text(p)}
	}
	return protocolErrorf("got %v frame, want ACCEPT or REJECT", t)
}

// HeldLimit is how many chunk buffers (each ChunkSize) a sender that can
// reconnect keeps for data the receiver has not yet reported written out.
// The receiver reports at least every ReportBytes, so the buffers hold what
// the link and the receiver's buffers hold (a 16 MiB muxer window at most),
// plus the time a report takes to come back; the input's reads decide how
// full each buffer is (a pipe gives 64 KiB at a time).
const HeldLimit = 96

// sender is the data phase of Send.
type sender struct {
	ctx  context.Context
	opt  Options
	c    *conn  // the current stream
	stop func() // stops c's heartbeat and watch
	peer *reader
	lane *laneWatch // the lane's watch, once the data went over to a lane

	endSent  atomic.Bool
	sent     atomic.Int64  // bytes handed to a stream: the receiver cannot report more
	reported atomic.Int64  // the receiver's last count of bytes written out
	reports  chan struct{} // signalled after each report
	n        int64         // bytes read from the input (and sent at least once)
	end      []byte        // the END payload, once the input ended

	held []held       // data sent and not yet reported written out, in order
	free chan<- *slab // where buffers go back to the reader
	out  int          // buffers the reader has handed out and not got back
}

// held is a chunk kept for a resend: n bytes of data at offset off, in
// buf after frame.HeaderSize bytes of room, in the buffer slab.
type held struct {
	off  int64
	buf  []byte
	n    int
	slab *slab
}

// use makes c the current stream, with its heartbeat running.
func (s *sender) use(c *conn) {
	s.c = c
	s.stop = c.start()
}

func (s *sender) run(src io.Reader) (int64, error) {
	s.listen()
	readCtx, stopReading := context.WithCancel(s.ctx)
	defer stopReading()
	buffers := 3
	if s.opt.Reconnect != nil {
		buffers += HeldLimit
	}
	chunks, free, done := readChunks(readCtx, src, buffers)
	defer done() // no slab is touched after run; the arena goes once the reader stopped too
	s.free = free
	digest := newDigest()
	var ackWait <-chan time.Time // after END: how long the receiver may take to acknowledge
	var stalled <-chan time.Time // while every buffer is held: how long the receiver may take to report
	for {
		switch {
		case s.out < HeldLimit:
			stalled = nil
		case stalled == nil:
			stalled = time.After(s.c.timing.Stall)
		}
		select {
		case <-s.ctx.Done():
			return s.n, s.ctx.Err()
		case <-s.reports:
			s.release()
		case <-s.peer.done:
			err := s.peer.err
			if err == nil {
				if !s.endSent.Load() {
					return s.n, protocolErrorf("ACK before END")
				}
				return s.n, s.closeWrite()
			}
			if err := s.resume(err); err != nil {
				return s.n, err
			}
			if s.endSent.Load() {
				ackWait = time.After(s.c.timing.Stall)
			}
		case ch := <-chunks:
			s.took(ch)
			if ch.n > 0 {
				data := ch.buf[frame.HeaderSize : frame.HeaderSize+ch.n]
				digest.Write(data)
				frame.PutHeader(ch.buf, frame.Data, ch.n)
				if s.opt.Reconnect != nil {
					s.held = append(s.held, held{off: s.n, buf: ch.buf, n: ch.n, slab: ch.slab})
				}
				s.sent.Add(int64(ch.n))
				s.n += int64(ch.n)
				s.c.extendWriteDeadline()
				err := s.c.sendFramed(ch.buf[:frame.HeaderSize+ch.n])
				if s.opt.Progress != nil {
					s.opt.Progress(s.n)
				}
				if err != nil {
					if err := s.resume(writeError(s.ctx, err, s.peer, s.c.timing.Stall)); err != nil {
						return s.n, err
					}
				}
			}
			if s.opt.Reconnect == nil || ch.n == 0 {
				s.giveBack(ch.slab)
			}
			if ch.err != nil && ch.err != io.EOF {
				return s.n, fmt.Errorf("read input: %w", ch.err)
			}
			if ch.err == io.EOF {
				chunks = nil
				s.end = digest.Sum(binary.BigEndian.AppendUint64(make([]byte, 0, endSize), uint64(s.n)))
				s.endSent.Store(true)
				if err := s.sendEnd(); err != nil {
					return s.n, err
				}
				// The receiver syncs what it wrote before it acknowledges;
				// its writeback began while the data arrived, so that takes
				// seconds.
				ackWait = time.After(s.c.timing.Stall)
			}
		case <-ackWait:
			return s.n, &StalledError{Step: "has not acknowledged the data", For: s.c.timing.Stall}
		case <-stalled:
			return s.n, &StalledError{Step: "has taken no data", For: s.c.timing.Stall}
		}
	}
}

// sendEnd writes the END frame, resuming on a new stream if this one broke.
func (s *sender) sendEnd() error {
	s.c.extendWriteDeadline()
	if err := s.c.send(frame.End, s.end); err != nil {
		return s.resume(writeError(s.ctx, err, s.peer, s.c.timing.Stall))
	}
	return nil
}

// closeWrite ends the stream once the ACK is in. The receiver waits for
// this EOF before it closes its side, so that no close of its can drop the
// ACK on the way.
func (s *sender) closeWrite() error {
	if err := s.c.s.CloseWrite(); err != nil {
		return fmt.Errorf("close stream for writing: %w", err)
	}
	waitEOF(s.c, s.c.timing.AbortWait)
	return nil
}

// listen starts the goroutine that reads the receiver's frames on the
// current stream. From here on it is the stream's only reader: peer.done
// closes when it has read the ACK, or failed.
func (s *sender) listen() {
	c := s.c
	peer := &reader{done: make(chan struct{})}
	s.peer = peer
	c.reader = peer.done
	go func() {
		err := s.awaitAck(c)
		// Unblock a data write stuck on a peer that is gone. Not when our own
		// context ended: the watch in start already bounds the writes by
		// AbortWait, and cutting the stream now would tear a DATA frame in
		// half and fail abort's ERROR frame, so the receiver would see a
		// truncated stream instead of "interrupted".
		if err != nil && s.ctx.Err() == nil {
			c.unblockWrites(0)
		}
		peer.err = err
		close(peer.done)
	}()
}

// reader is the outcome of the goroutine that reads the receiver's frames.
type reader struct {
	done chan struct{} // closed once err is set
	err  error
}

// errClosedEarly reports a receiver's stream that ended before its ACK.
var errClosedEarly = errors.New("the receiver closed the stream without acknowledging the data")

// awaitAck reads the receiver's frames on c during the data phase:
// heartbeats and RECEIVED counts, passed to opt.Delivered, until the ACK
// that must follow END. A count may not go back, nor exceed what was sent.
func (s *sender) awaitAck(c *conn) error {
	for {
		t, p, err := c.next()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return errClosedEarly
		case err != nil:
			return err
		case t == frame.Received:
			if len(p) != 8 {
				return protocolErrorf("RECEIVED frame of %d bytes", len(p))
			}
			n, out, last := int64(binary.BigEndian.Uint64(p)), s.sent.Load(), s.reported.Load()
			if n < last || n > out {
				return protocolErrorf("the receiver reports %d bytes written, after %d, with %d sent", n, last, out)
			}
			s.reported.Store(n)
			select {
			case s.reports <- struct{}{}:
			default:
			}
			if s.opt.Delivered != nil {
				s.opt.Delivered(n, out)
			}
			continue
		case t == frame.Ack && s.endSent.Load():
			return nil
		}
		return protocolErrorf("unexpected %v frame from the receiver", t)
	}
}

// release gives back the buffers of data the receiver has reported written
// out: it will never be asked for again.
func (s *sender) release() {
	upTo := s.reported.Load()
	i := 0
	for ; i < len(s.held) && s.held[i].off+int64(s.held[i].n) <= upTo; i++ {
		s.giveBack(s.held[i].slab)
	}
	if i == 0 {
		return
	}
	// Moved down rather than resliced, so that appending reuses the same
	// array for the whole transfer instead of leaving garbage behind.
	s.held = s.held[:copy(s.held, s.held[i:])]
}

// resume replaces a broken stream through opt.Reconnect and sends again
// what the receiver has not written out, then END if it was sent. It
// returns cause itself when cause is not a break of the connection (the
// receiver's own failure, an interruption) or the sender cannot reconnect.
func (s *sender) resume(cause error) error {
	for s.opt.Reconnect != nil && broken(s.ctx, cause) {
		lost := time.Now()
		s.drop()
		if s.opt.Lost != nil {
			s.opt.Lost(cause)
		}
		stream, err := s.opt.Reconnect(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
			return &LostError{Cause: cause, Reconnect: err}
		}
		s.use(newConn(s.ctx, stream, s.opt.Timing))
		at, err := s.resumeAt()
		if err != nil {
			cause = err
			continue
		}
		s.listen()
		s.release()
		if err := s.resend(at); err != nil {
			cause = writeError(s.ctx, err, s.peer, s.c.timing.Stall)
			continue
		}
		if s.opt.Resumed != nil {
			s.opt.Resumed(time.Since(lost), at)
		}
		return nil
	}
	return cause
}

// drop ends the broken stream: no heartbeat any more, a reset for
// whatever is left of it, and its reader gone.
func (s *sender) drop() {
	s.stop()
	reset(s.c.s)
	select {
	case <-s.peer.done:
	case <-time.After(s.c.timing.AbortWait):
	}
}

// resumeAt reads the receiver's first frame on a new stream: its count of
// the bytes it has written out, from which the data goes on.
func (s *sender) resumeAt() (int64, error) {
	t, p, err := s.c.next()
	switch {
	case err != nil:
		return 0, fmt.Errorf("wait for the receiver's count: %w", err)
	case t != frame.Resume || len(p) != 8:
		return 0, protocolErrorf("got %v frame of %d bytes, want RESUME", t, len(p))
	}
	at := int64(binary.BigEndian.Uint64(p))
	if last, out := s.reported.Load(), s.sent.Load(); at < last || at > out {
		return 0, protocolErrorf("the receiver resumes at %d bytes, after reporting %d, with %d sent", at, last, out)
	}
	s.reported.Store(at)
	return at, nil
}

// resend writes the held data from offset at, then END if it was sent.
func (s *sender) resend(at int64) error {
	for _, h := range s.held {
		from := max(at-h.off, 0)
		if from >= int64(h.n) {
			continue
		}
		data := h.buf[frame.HeaderSize+from : frame.HeaderSize+h.n]
		s.c.extendWriteDeadline()
		if err := s.c.send(frame.Data, data); err != nil {
			return err
		}
	}
	if s.endSent.Load() {
		s.c.extendWriteDeadline()
		return s.c.send(frame.End, s.end)
	}
	return nil
}

// broken reports whether err is a break of the connection, which a new
// stream may mend, rather than a failure that a peer or this side meant:
// an ERROR frame, a breach of the protocol, a stalled receiver, a refusal,
// a failed input or output, an interruption.
func broken(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch {
	case errors.As(err, new(*PeerError)), errors.As(err, new(*ProtocolError)), errors.As(err, new(*StalledError)),
		errors.As(err, new(*RejectedError)), errors.As(err, new(*rejected)), errors.As(err, new(*outputError)),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

// reset ends a stream at once.
func reset(s Stream) {
	if r, ok := s.(interface{ Reset() error }); ok {
		r.Reset()
		return
	}
	if cl, ok := s.(io.Closer); ok {
		cl.Close()
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

// chunk is one read of the input.
type chunk struct {
	buf  []byte // frame.HeaderSize bytes of room, then n bytes of data, in slab
	n    int
	err  error
	slab *slab
	last bool // the reader puts no more chunks in slab
}

// slab is a buffer of frame.HeaderSize+ChunkSize bytes that the reader
// fills with one chunk after another, each with its own room for a frame
// header, until too little room is left: an input that gives less than a
// whole chunk at a time (a pipe gives 64 KiB) does not take a buffer for
// each read, which matters for the data a sender holds for a resend.
type slab struct {
	buf     []byte
	pending int  // the slab's chunks not given back yet (sender's goroutine only)
	full    bool // the reader puts no more chunks in it
	counted bool // counted in sender.out
}

// minRoom is the least room a slab must have left for the next read to go
// into it rather than into another slab.
const minRoom = 16 << 10

// took counts ch against its slab.
func (s *sender) took(ch chunk) {
	if !ch.slab.counted {
		ch.slab.counted = true
		s.out++
	}
	ch.slab.pending++
	if ch.last {
		ch.slab.full = true
	}
}

// giveBack gives back one chunk of sl: the reader gets sl again once it
// is full and all its chunks are given back.
func (s *sender) giveBack(sl *slab) {
	sl.pending--
	if sl.full && sl.pending == 0 {
		sl.full, sl.counted = false, false
		s.out--
		s.free <- sl
	}
}

// firstChunk is the most the first DATA frame carries; each next one may
// carry twice as much, up to ChunkSize. A new connection's congestion window
// is about 14 KiB, so a whole first chunk of ChunkSize would take four or
// five round trips to arrive, and the receiver writes a frame only once it
// is whole.
const firstChunk = 16 << 10

// readChunks reads src in a goroutine, into buffers slabs that the caller
// hands back through free, so that reading the input and writing the
// stream overlap. The slabs are made at once, in an arena (see arena), and
// taken in turn: free is a queue. The caller calls done once it touches
// no slab any more; the arena goes once the goroutine has ended too.
func readChunks(ctx context.Context, src io.Reader, buffers int) (chunks <-chan chunk, free chan<- *slab, done func()) {
	out := make(chan chunk)
	queue := make(chan *slab, buffers)
	const size = frame.HeaderSize + ChunkSize
	a := newArena(buffers, size, 2)
	for i := range buffers {
		queue <- &slab{buf: a.slab(i, size)}
	}
	go func() {
		defer a.done()
		limit := firstChunk
		var cur *slab // the slab being filled
		off := 0      // where its next chunk starts
		for {
			if cur == nil {
				select {
				case cur = <-queue:
				case <-ctx.Done():
					return
				}
				off = 0
			}
			room := len(cur.buf) - off - frame.HeaderSize
			n, err := src.Read(cur.buf[off+frame.HeaderSize : off+frame.HeaderSize+min(limit, room)])
			limit = min(2*limit, ChunkSize)
			ch := chunk{buf: cur.buf[off : off+frame.HeaderSize+n], n: n, err: err, slab: cur}
			if n > 0 {
				off += frame.HeaderSize + n
			}
			if err != nil || len(cur.buf)-off-frame.HeaderSize < minRoom {
				ch.last, cur = true, nil
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out, queue, a.done
}
