package pipe

import "github.com/zeebo/xxh3"

// The END frame's digest is XXH3-128 of all data. It need not resist an
// attacker: the libp2p channel already authenticates every byte (TLS 1.3 or
// Noise AEAD), and a peer that proved the code could send any data anyway.
// It guards the pipe's own framing and buffers end to end, so what matters is
// that it never slows the stream: 31 GB/s here, against 4.2 GB/s for BLAKE3,
// which took a quarter of the pipe's CPU time at 0.77 GB/s.
const digestSize = 16

// endSize is the END frame's payload: the byte count, then the digest.
const endSize = 8 + digestSize

type digest struct{ h *xxh3.Hasher }

func newDigest() digest { return digest{h: xxh3.New()} }

func (d digest) Write(p []byte) { d.h.Write(p) }

// Sum appends the digest to b.
func (d digest) Sum(b []byte) []byte {
	sum := d.h.Sum128().Bytes()
	return append(b, sum[:]...)
}
