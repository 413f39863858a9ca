package pipe

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/lib/frame"
)

// readChunks makes all its slabs at once and takes them in turn: a reader
// that is given nothing back fills each slab once and then waits; a slab
// given back is the next one filled.
func TestReadChunksTakesSlabsInTurn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const buffers = 5
	chunks, free, done := readChunks(ctx, endless{}, buffers)
	defer done()
	var seen []*slab
	for len(seen) < buffers {
		select {
		case ch := <-chunks:
			if ch.last {
				seen = append(seen, ch.slab)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d slabs filled, want %d", len(seen), buffers)
		}
	}
	for i := range seen {
		for j := range i {
			if seen[i] == seen[j] {
				t.Fatalf("slab %d filled twice before every slab was used", i)
			}
		}
	}
	select {
	case ch := <-chunks:
		t.Fatalf("a chunk in slab %p although every slab is out", ch.slab)
	case <-time.After(100 * time.Millisecond):
	}
	free <- seen[2]
	if ch := <-chunks; ch.slab != seen[2] {
		t.Fatalf("the next chunk went into %p, not the slab given back", ch.slab)
	}
}

// The slabs of a sender that can resume (24 MiB) are not in the Go heap
// where the system maps memory, so that they do not raise the collector's
// goal for the rest; they are usable until their last user is done.
func TestArenaIsOutsideTheHeap(t *testing.T) {
	const size = frame.HeaderSize + ChunkSize
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	a := newArena(HeldLimit+3, size, 2)
	runtime.ReadMemStats(&after)
	if a.unmap != nil && after.HeapAlloc > before.HeapAlloc+1<<20 {
		t.Errorf("the heap grew by %d bytes for a mapped arena", after.HeapAlloc-before.HeapAlloc)
	}
	if a.unmap == nil && (runtime.GOOS == "linux" || runtime.GOOS == "darwin") {
		t.Errorf("no arena mapped on %s", runtime.GOOS)
	}
	for i := range HeldLimit + 3 {
		s := a.slab(i, size)
		if len(s) != size || cap(s) != size {
			t.Fatalf("slab %d: len %d cap %d, want %d", i, len(s), cap(s), size)
		}
		s[0], s[size-1] = byte(i), byte(i)
	}
	a.done()
	if got := a.slab(7, size)[size-1]; got != 7 {
		t.Errorf("after the first user is done, slab 7 ends in %d, want 7", got)
	}
	a.done()
}
