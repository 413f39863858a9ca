package code

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tyler-smith/go-bip39/wordlists"
)

// listSize is the number of words in the BIP39 English wordlist.
const listSize = 1 << bitsPerWord

// prefixLen is the length of prefix that identifies a BIP39 English word.
const prefixLen = 4

// maxCompareLen bounds the length of an unknown word for which Parse looks
// for nearest words; longer input is garbage and not worth the time.
const maxCompareLen = 32

// table is the read-only lookup structure built once from the wordlist.
type table struct {
	words  []string          // index -> word
	exact  map[string]uint16 // word -> index
	prefix map[string]int    // first prefixLen letters -> index, or -1 if shared
}

// wordTable returns the shared lookup table, building it on first use.
var wordTable = sync.OnceValue(newTable)

// newTable builds the lookup table from the BIP39 English wordlist. It
// panics if the list is not the 2048 lowercase ASCII words expected, which
// would break every code ever generated.
func newTable() *table {
	words := slices.Clone(wordlists.English)
	if len(words) != listSize {
		panic(fmt.Sprintf("code: wordlist has %d words, want %d", len(words), listSize))
	}
	t := &table{
		words:  words,
		exact:  make(map[string]uint16, len(words)),
		prefix: make(map[string]int, len(words)),
	}
	for i, w := range words {
		if w == "" || strings.TrimLeft(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			panic(fmt.Sprintf("code: wordlist entry %d (%q) is not a lowercase word", i, w))
		}
		t.exact[w] = uint16(i)
		if len(w) >= prefixLen {
			p := w[:prefixLen]
			if _, dup := t.prefix[p]; dup {
				t.prefix[p] = -1
			} else {
				t.prefix[p] = i
			}
		}
	}
	return t
}

// lookup resolves a typed word, in any ASCII case, to its index: either
// the word itself or an unambiguous prefix of at least prefixLen letters.
func (t *table) lookup(w string) (uint16, bool) {
	lw, ok := lowerASCII(w)
	if !ok {
		return 0, false
	}
	if idx, ok := t.exact[lw]; ok {
		return idx, true
	}
	if len(lw) < prefixLen {
		return 0, false
	}
	idx, ok := t.prefix[lw[:prefixLen]]
	if !ok || idx < 0 || !strings.HasPrefix(t.words[idx], lw) {
		return 0, false
	}
	return uint16(idx), true
}

// lowerASCII lowercases s, reporting false if s contains any non-ASCII byte.
func lowerASCII(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// nearest returns up to n wordlist words closest to w by optimal string
// alignment distance (Levenshtein with adjacent transpositions), ties
// broken alphabetically. It returns nil for words longer than
// maxCompareLen.
func (t *table) nearest(w string, n int) []string {
	if len(w) > maxCompareLen || n <= 0 {
		return nil
	}
	lw := strings.ToLower(w)
	type candidate struct {
		word string
		dist int
	}
	var d distance
	best := make([]candidate, 0, n+1)
	for _, word := range t.words {
		// The length difference is a lower bound on the distance.
		if len(best) == n && abs(len(lw)-len(word)) > best[n-1].dist {
			continue
		}
		c := candidate{word, d.osa(lw, word)}
		if len(best) == n && (c.dist > best[n-1].dist ||
			c.dist == best[n-1].dist && c.word > best[n-1].word) {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, c, func(a, b candidate) int {
			return cmp.Or(cmp.Compare(a.dist, b.dist), strings.Compare(a.word, b.word))
		})
		best = slices.Insert(best, i, c)
		if len(best) > n {
			best = best[:n]
		}
	}
	out := make([]string, len(best))
	for i, c := range best {
		out[i] = c.word
	}
	return out
}

// distance holds scratch rows for edit distance computations, so that
// comparing one word against the whole list allocates only once.
type distance struct {
	prev2, prev, cur []int
}

// osa returns the optimal string alignment distance between a and b,
// counting insertions, deletions, substitutions and transpositions of
// adjacent bytes as one edit each.
func (d *distance) osa(a, b string) int {
	n := len(b) + 1
	if cap(d.cur) < n {
		d.prev2, d.prev, d.cur = make([]int, n), make([]int, n), make([]int, n)
	}
	d.prev2, d.prev, d.cur = d.prev2[:n], d.prev[:n], d.cur[:n]
	for j := range d.prev {
		d.prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		d.cur[0] = i
		for j := 1; j < n; j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(d.prev[j]+1, d.cur[j-1]+1, d.prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				v = min(v, d.prev2[j-2]+1)
			}
			d.cur[j] = v
		}
		d.prev2, d.prev, d.cur = d.prev, d.cur, d.prev2
	}
	return d.prev[n-1]
}

// abs returns the absolute value of x.
func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
