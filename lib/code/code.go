// Package code implements the pairing code of pcp.
//
// A code is a short sequence of words from the BIP39 English wordlist,
// joined by dashes, for example "abandon-ability-able-about". The first
// word selects a public channel (its index in the wordlist, 0..2047) and the
// whole canonical code is the password for the PAKE handshake, so every
// word after the first carries 11 bits of secret.
package code

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
)

const (
	// MinWords is the smallest number of words a code may have.
	MinWords = 3
	// DefaultWords is the number of words in a freshly generated code
	// unless the user asks for another length.
	DefaultWords = 4
	// MaxWords is the largest number of words a code may have.
	MaxWords = 24
)

// bitsPerWord is the number of bits one word encodes (2048 = 1<<11 words).
const bitsPerWord = 11

// passwordPrefix domain-separates the password derived from a code.
const passwordPrefix = "pcp/1 password"

// Errors describing a code of the wrong shape. Parse and Generate wrap them
// with details, so test for them with errors.Is.
var (
	// ErrEmpty is returned by Parse for an input without any word.
	ErrEmpty = errors.New("empty code")
	// ErrTooFewWords is returned for a code shorter than MinWords.
	ErrTooFewWords = errors.New("too few words")
	// ErrTooManyWords is returned for a code longer than MaxWords.
	ErrTooManyWords = errors.New("too many words")
)

// Code is a parsed, canonical pairing code. Its zero value is invalid and
// is reported by IsZero. A Code is immutable and safe for concurrent use.
type Code struct {
	indices []uint16
}

// Generate returns a new random code of the given number of words, drawing
// 11 bits per word from rand, or from crypto/rand when rand is nil. Since
// the wordlist has exactly 2048 entries, every word is uniformly
// distributed.
func Generate(words int, rand io.Reader) (Code, error) {
	if err := checkCount(words); err != nil {
		return Code{}, err
	}
	if rand == nil {
		rand = cryptoRand()
	}
	buf := make([]byte, (words*bitsPerWord+7)/8)
	if _, err := io.ReadFull(rand, buf); err != nil {
		return Code{}, fmt.Errorf("read random bytes for code: %w", err)
	}
	return Code{indices: unpack(buf, words)}, nil
}

// cryptoRand returns the system's secure random source. It lives in its own
// function because Generate's parameter shadows the package name.
func cryptoRand() io.Reader { return rand.Reader }

// unpack splits buf into n big-endian 11-bit numbers.
func unpack(buf []byte, n int) []uint16 {
	out := make([]uint16, 0, n)
	var acc uint32 // holds the nbits not yet consumed in its low bits
	nbits := 0
	for _, b := range buf {
		acc = acc<<8 | uint32(b)
		nbits += 8
		for nbits >= bitsPerWord && len(out) < n {
			nbits -= bitsPerWord
			out = append(out, uint16(acc>>nbits)&(1<<bitsPerWord-1))
			acc &= 1<<nbits - 1
		}
	}
	return out
}

// checkCount reports whether n is an allowed number of words.
func checkCount(n int) error {
	switch {
	case n < MinWords:
		return fmt.Errorf("%w: code has %d, need at least %d", ErrTooFewWords, n, MinWords)
	case n > MaxWords:
		return fmt.Errorf("%w: code has %d, at most %d allowed", ErrTooManyWords, n, MaxWords)
	}
	return nil
}

// Parse reads a code as typed by a person. It is forgiving: letters may be
// in any case; words may be separated by any run of dashes, spaces, tabs,
// newlines, underscores, dots or commas, and separators at either end are
// ignored; and a word may be abbreviated to any prefix of four or more
// letters, since BIP39 English words are unique in their first four.
//
// A word that cannot be resolved yields an *UnknownWordError; a code with
// no words, or too few or too many, yields an error wrapping ErrEmpty,
// ErrTooFewWords or ErrTooManyWords. All error messages are a single line.
func Parse(s string) (Code, error) {
	fields, n := splitWords(s, MaxWords)
	if n == 0 {
		return Code{}, ErrEmpty
	}
	if err := checkCount(n); err != nil {
		return Code{}, err
	}
	t := wordTable()
	indices := make([]uint16, n)
	for i, w := range fields {
		idx, ok := t.lookup(w)
		if !ok {
			return Code{}, &UnknownWordError{
				Word:     w,
				Position: i + 1,
				Nearest:  t.nearest(w, 3),
			}
		}
		indices[i] = idx
	}
	return Code{indices: indices}, nil
}

// isSeparator reports whether b may separate the words of a code.
func isSeparator(b byte) bool {
	switch b {
	case '-', ' ', '\t', '\n', '\r', '_', '.', ',':
		return true
	}
	return false
}

// splitWords returns the first limit words of s and the total number of
// words in s. It does not keep more than limit words, so an absurdly long
// input costs no more memory than a valid one.
func splitWords(s string, limit int) (words []string, n int) {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && !isSeparator(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if n < limit {
				words = append(words, s[start:i])
			}
			n++
			start = -1
		}
	}
	return words, n
}

// String returns the canonical form of c: the full lowercase words joined
// by "-". It returns "" for the zero Code.
func (c Code) String() string {
	words := wordTable().words
	var b strings.Builder
	for i, idx := range c.indices {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(words[idx])
	}
	return b.String()
}

// Channel returns the public channel number of c, the index of its first
// word in the wordlist (0..2047). It returns -1 for the zero Code.
func (c Code) Channel() int {
	if c.IsZero() {
		return -1
	}
	return int(c.indices[0])
}

// Words returns the number of words in c.
func (c Code) Words() int { return len(c.indices) }

// Password returns the PAKE password for c: the SHA-256 digest of
// "pcp/1 password" followed by the canonical string. Codes that differ only
// in how they were typed have the same password. It returns nil for the
// zero Code. The caller may modify the returned slice.
func (c Code) Password() []byte {
	if c.IsZero() {
		return nil
	}
	h := sha256.New()
	io.WriteString(h, passwordPrefix)
	io.WriteString(h, c.String())
	return h.Sum(nil)
}

// SecretBits returns the number of secret bits in c: 11 for every word
// after the first, which is public as the channel number.
func (c Code) SecretBits() int {
	if c.IsZero() {
		return 0
	}
	return bitsPerWord * (len(c.indices) - 1)
}

// GuessBudget returns how many failed password attempts a peer should
// tolerate on c's channel: 2^SecretBits / 1e6, so that an attacker using
// the whole budget wins with probability at most one in a million, but
// never less than 3, so that a few typos are forgiven. The result saturates
// at math.MaxInt. It returns 0 for the zero Code.
func (c Code) GuessBudget() int {
	if c.IsZero() {
		return 0
	}
	q := new(big.Int).Lsh(big.NewInt(1), uint(c.SecretBits()))
	q.Quo(q, big.NewInt(1_000_000))
	if q.Cmp(big.NewInt(math.MaxInt)) > 0 {
		return math.MaxInt
	}
	return max(3, int(q.Int64()))
}

// IsZero reports whether c is the zero Code, which is not a valid code.
func (c Code) IsZero() bool { return len(c.indices) == 0 }

// UnknownWordError is returned by Parse for a word that is neither in the
// wordlist nor an unambiguous prefix of four or more letters of one.
type UnknownWordError struct {
	// Word is the word as it was typed.
	Word string
	// Position is the 1-based position of Word in the code.
	Position int
	// Nearest holds up to three valid words closest to Word by edit
	// distance, best first. It is empty when Word is too long to compare.
	Nearest []string
}

// maxQuotedWord bounds how much of an unknown word goes into an error
// message, so that pasting garbage does not produce a screenful of it.
const maxQuotedWord = 32

// Error returns a one-line message such as
// `unknown word "bubbel" (word 1); did you mean bubble, bundle or rubber?`.
func (e *UnknownWordError) Error() string {
	w := e.Word
	if len(w) > maxQuotedWord {
		cut := maxQuotedWord
		for cut > 0 && !isRuneStart(w[cut]) {
			cut--
		}
		w = w[:cut] + "..."
	}
	msg := fmt.Sprintf("unknown word %q (word %d)", w, e.Position)
	switch n := len(e.Nearest); n {
	case 0:
		return msg
	case 1:
		return msg + "; did you mean " + e.Nearest[0] + "?"
	default:
		return msg + "; did you mean " + strings.Join(e.Nearest[:n-1], ", ") +
			" or " + e.Nearest[n-1] + "?"
	}
}

// isRuneStart reports whether b can begin a UTF-8 encoded rune.
func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
