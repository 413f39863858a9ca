package pipe

import "sync/atomic"

// arena is the memory of a sender's slabs, made in one piece when the data
// phase starts and, where the system allows, outside the Go heap.
//
// A sender that can resume holds up to HeldLimit slabs (24 MiB) of data the
// receiver has not reported yet. Made one at a time as delays first ask for
// them, they made the sender's memory creep up for minutes of a long
// transfer; in the Go heap, they would also double the garbage collector's
// goal for everything else (it lets the heap grow to twice what is live).
// Made at once outside the heap, and taken in turn, they cost the same at
// most, reach it within the first 25 MiB sent, and leave the collector to
// pace the little else the sender allocates.
type arena struct {
	mem   []byte
	unmap func() // gives mem back to the system (nil: the Go heap has it)
	users atomic.Int32
}

// newArena makes an arena of n slabs of size bytes, used by users parties
// that each call done once.
func newArena(n, size, users int) *arena {
	a := &arena{}
	a.mem, a.unmap = mapMemory(n * size)
	if a.mem == nil {
		a.mem = make([]byte, n*size)
	}
	a.users.Store(int32(users))
	return a
}

// slab is the i-th slab of size bytes.
func (a *arena) slab(i, size int) []byte {
	return a.mem[i*size : (i+1)*size : (i+1)*size]
}

// done says that one user will not touch the arena again; after the last,
// its memory goes back to the system.
func (a *arena) done() {
	if a.users.Add(-1) == 0 && a.unmap != nil {
		a.unmap()
	}
}
