package code

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tyler-smith/go-bip39/wordlists"
)

// indexOf returns the index of w in the BIP39 English wordlist, or -1.
func indexOf(w string) int { return slices.Index(wordlists.English, w) }

// checkMessage fails t unless msg is a short, single, lowercase line fit
// for a CLI to print after its own prefix.
func checkMessage(t *testing.T, msg string) {
	t.Helper()
	if msg == "" {
		t.Fatal("empty error message")
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error message spans lines: %q", msg)
	}
	if r := []rune(msg)[0]; unicode.IsUpper(r) {
		t.Errorf("error message not lowercase: %q", msg)
	}
	if len(msg) > 200 {
		t.Errorf("error message too long (%d bytes): %.80q...", len(msg), msg)
	}
}

func TestParse(t *testing.T) {
	const canon = "abandon-ability-able-about"
	tests := []struct {
		name    string
		in      string
		want    string
		channel int
	}{
		{"canonical", canon, canon, 0},
		{"mixed case", "Abandon-ABILITY-able-AbOuT", canon, 0},
		{"spaces", "abandon ability able about", canon, 0},
		{"multiple separators", "abandon -- ability__able.,. about", canon, 0},
		{"tabs and newlines", "abandon\tability\r\nable\nabout", canon, 0},
		{"leading and trailing separators", " -_abandon-ability-able-about. \t", canon, 0},
		{"four-letter prefixes", "aban-abil-able-abou", canon, 0},
		{"upper-case prefixes", "ABAN ABIL ABLE ABOU", canon, 0},
		{"longer prefixes", "aband-abili-able-about", canon, 0},
		{"three words", "zoo-zoo-zoo", "zoo-zoo-zoo", 2047},
		{"three-letter words", "act add zoo", "act-add-zoo", indexOf("act")},
		{"channel from first word", "bubble-act-add", "bubble-act-add", indexOf("bubble")},
		{"max words", strings.Repeat("zoo ", MaxWords), strings.TrimSuffix(strings.Repeat("zoo-", MaxWords), "-"), 2047},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := c.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := c.Channel(); got != tt.channel {
				t.Errorf("Channel() = %d, want %d", got, tt.channel)
			}
			if got, want := c.Words(), strings.Count(tt.want, "-")+1; got != want {
				t.Errorf("Words() = %d, want %d", got, want)
			}
			if c.IsZero() {
				t.Error("IsZero() = true for a parsed code")
			}
		})
	}
}

func TestParseFormatErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrEmpty},
		{"only separators", " -_.,\t\n", ErrEmpty},
		{"one word", "abandon", ErrTooFewWords},
		{"two words", "abandon-ability", ErrTooFewWords},
		{"two words with separators", "-abandon--ability-", ErrTooFewWords},
		{"too many words", strings.Repeat("zoo-", MaxWords+1), ErrTooManyWords},
		{"very long input", strings.Repeat("abandon-", 100_000), ErrTooManyWords},
		{"too many unknown words", strings.Repeat("xx ", 30), ErrTooManyWords},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%.40q) error = %v, want %v", tt.in, err, tt.want)
			}
			if !c.IsZero() {
				t.Errorf("Parse returned non-zero code %q with error", c)
			}
			checkMessage(t, err.Error())
		})
	}
}

func TestParseUnknownWord(t *testing.T) {
	long := strings.Repeat("a", 100_000)
	tests := []struct {
		name     string
		in       string
		word     string
		position int
		nearest  string // must be among Nearest, unless empty
	}{
		{"misspelling", "bubbel-ability-able", "bubbel", 1, "bubble"},
		{"misspelling keeps case", "abandon-ABILTIY-able", "ABILTIY", 2, "ability"},
		{"prefix longer than word", "abandon-abilityx-able", "abilityx", 2, "ability"},
		{"three-letter non-word", "aba-ability-able", "aba", 1, ""},
		{"three-letter prefix", "abandon-ability-abl", "abl", 3, "able"},
		{"digits", "abandon-ability-4bl3", "4bl3", 3, ""},
		{"non-ASCII letter", "abandon-\u00e1bility-able", "\u00e1bility", 2, ""},
		{"non-ASCII lowercasing to ASCII", "abandon-ability-\u212aey", "\u212aey", 3, ""},
		{"invalid UTF-8", "abandon-ability-\xff\xfe", "\xff\xfe", 3, ""},
		{"very long word", long + "-ability-able", long, 1, ""},
		{"first bad word reported", "abandon-xyzzy-qqqq-able", "xyzzy", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in)
			var uw *UnknownWordError
			if !errors.As(err, &uw) {
				t.Fatalf("Parse(%.40q) error = %v, want *UnknownWordError", tt.in, err)
			}
			if !c.IsZero() {
				t.Errorf("Parse returned non-zero code %q with error", c)
			}
			if uw.Word != tt.word {
				t.Errorf("Word = %.40q, want %.40q", uw.Word, tt.word)
			}
			if uw.Position != tt.position {
				t.Errorf("Position = %d, want %d", uw.Position, tt.position)
			}
			if len(uw.Nearest) > 3 {
				t.Errorf("Nearest has %d words, want at most 3", len(uw.Nearest))
			}
			if tt.nearest != "" && !slices.Contains(uw.Nearest, tt.nearest) {
				t.Errorf("Nearest = %q, want it to contain %q", uw.Nearest, tt.nearest)
			}
			for _, w := range uw.Nearest {
				if indexOf(w) < 0 {
					t.Errorf("Nearest contains %q, not in the wordlist", w)
				}
			}
			checkMessage(t, err.Error())
		})
	}
}

func TestUnknownWordNearestRanking(t *testing.T) {
	_, err := Parse("bubbel-ability-able")
	var uw *UnknownWordError
	if !errors.As(err, &uw) {
		t.Fatalf("Parse error = %v, want *UnknownWordError", err)
	}
	// "bubble" is one transposition away, so it must come first; the
	// rest are at distance 2 at best and must be sorted.
	if len(uw.Nearest) != 3 || uw.Nearest[0] != "bubble" {
		t.Fatalf("Nearest = %q, want 3 words starting with bubble", uw.Nearest)
	}
	var d distance
	for i := 1; i < len(uw.Nearest); i++ {
		a, b := uw.Nearest[i-1], uw.Nearest[i]
		da, db := d.osa("bubbel", a), d.osa("bubbel", b)
		if da > db || da == db && a > b {
			t.Errorf("Nearest not ranked: %q (%d) before %q (%d)", a, da, b, db)
		}
	}
	// No word outside the result may beat the last one.
	last := uw.Nearest[len(uw.Nearest)-1]
	dl := d.osa("bubbel", last)
	for _, w := range wordlists.English {
		if slices.Contains(uw.Nearest, w) {
			continue
		}
		if dw := d.osa("bubbel", w); dw < dl || dw == dl && w < last {
			t.Errorf("%q (distance %d) should rank above %q (distance %d)", w, dw, last, dl)
		}
	}
}

func TestUnknownWordErrorMessage(t *testing.T) {
	tests := []struct {
		err  *UnknownWordError
		want string
	}{
		{
			&UnknownWordError{Word: "bubbel", Position: 1, Nearest: []string{"bubble", "bundle", "rubber"}},
			`unknown word "bubbel" (word 1); did you mean bubble, bundle or rubber?`,
		},
		{
			&UnknownWordError{Word: "abl", Position: 3, Nearest: []string{"able", "ball"}},
			`unknown word "abl" (word 3); did you mean able or ball?`,
		},
		{
			&UnknownWordError{Word: "ablee", Position: 2, Nearest: []string{"able"}},
			`unknown word "ablee" (word 2); did you mean able?`,
		},
		{
			&UnknownWordError{Word: "x\ny", Position: 2},
			`unknown word "x\ny" (word 2)`,
		},
		{
			&UnknownWordError{Word: strings.Repeat("a", 31) + "\u00e9\u00e9", Position: 1},
			`unknown word "` + strings.Repeat("a", 31) + `..." (word 1)`,
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %s, want %s", got, tt.want)
		}
	}
}

func TestWordlistPrefixesUnique(t *testing.T) {
	// Parse relies on BIP39 English words being unique in their first
	// four letters.
	seen := make(map[string]string)
	for _, w := range wordlists.English {
		p := w[:min(len(w), prefixLen)]
		if other, ok := seen[p]; ok {
			t.Errorf("%q and %q share prefix %q", other, w, p)
		}
		seen[p] = w
	}
	if len(wordlists.English) != 2048 {
		t.Errorf("wordlist has %d words, want 2048", len(wordlists.English))
	}
}

func TestParseEveryWordAndPrefix(t *testing.T) {
	for i, w := range wordlists.English {
		for n := min(len(w), prefixLen); n <= len(w); n++ {
			in := w[:n] + "-" + strings.ToUpper(w[:n]) + " " + w
			c, err := Parse(in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", in, err)
			}
			if want := w + "-" + w + "-" + w; c.String() != want {
				t.Fatalf("Parse(%q) = %q, want %q", in, c, want)
			}
			if c.Channel() != i {
				t.Fatalf("Parse(%q).Channel() = %d, want %d", in, c.Channel(), i)
			}
		}
	}
}

func TestGenerate(t *testing.T) {
	for n := MinWords; n <= MaxWords; n++ {
		c, err := Generate(n, nil)
		if err != nil {
			t.Fatalf("Generate(%d): %v", n, err)
		}
		if c.Words() != n {
			t.Errorf("Generate(%d).Words() = %d", n, c.Words())
		}
		s := c.String()
		words := strings.Split(s, "-")
		if len(words) != n {
			t.Errorf("Generate(%d).String() = %q has %d words", n, s, len(words))
		}
		if got := indexOf(words[0]); got != c.Channel() {
			t.Errorf("Channel() = %d, but first word %q has index %d", c.Channel(), words[0], got)
		}
		p, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if p.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, p.String())
		}
		if !bytes.Equal(p.Password(), c.Password()) {
			t.Errorf("round trip of %q changed the password", s)
		}
	}
}

func TestGenerateWordCountErrors(t *testing.T) {
	tests := []struct {
		words int
		want  error
	}{
		{-1, ErrTooFewWords},
		{0, ErrTooFewWords},
		{MinWords - 1, ErrTooFewWords},
		{MaxWords + 1, ErrTooManyWords},
		{math.MaxInt, ErrTooManyWords},
	}
	for _, tt := range tests {
		c, err := Generate(tt.words, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("Generate(%d) error = %v, want %v", tt.words, err, tt.want)
			continue
		}
		if !c.IsZero() {
			t.Errorf("Generate(%d) returned non-zero code with error", tt.words)
		}
		checkMessage(t, err.Error())
	}
}

// counter is an io.Reader yielding the bytes 0, 1, 2, ... (mod 256).
type counter struct{ next byte }

func (r *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	return len(p), nil
}

func TestGenerateDeterministic(t *testing.T) {
	for _, n := range []int{MinWords, DefaultWords, 7, MaxWords} {
		a, err := Generate(n, &counter{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Generate(n, &counter{})
		if err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Errorf("Generate(%d) with equal readers: %q != %q", n, a, b)
		}

		// Independently split the same bytes into 11-bit big-endian
		// numbers with math/big.
		nbytes := (11*n + 7) / 8
		raw := make([]byte, nbytes)
		(&counter{}).Read(raw)
		x := new(big.Int).SetBytes(raw)
		mask := big.NewInt(2047)
		want := make([]string, n)
		for i := range want {
			shift := uint(8*nbytes - 11*(i+1))
			idx := new(big.Int).Rsh(x, shift)
			idx.And(idx, mask)
			want[i] = wordlists.English[idx.Int64()]
		}
		if got := a.String(); got != strings.Join(want, "-") {
			t.Errorf("Generate(%d, counter) = %q, want %q", n, got, strings.Join(want, "-"))
		}
	}
	// The counter's first 11 bits are zero, so word 1 is "abandon".
	c, _ := Generate(DefaultWords, &counter{})
	if c.Channel() != 0 {
		t.Errorf("Generate(counter).Channel() = %d, want 0", c.Channel())
	}
}

func TestGenerateAllOnes(t *testing.T) {
	c, err := Generate(MaxWords, bytes.NewReader(bytes.Repeat([]byte{0xff}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(strings.Repeat("zoo-", MaxWords), "-")
	if c.String() != want {
		t.Errorf("Generate from all-ones bytes = %q, want %q", c, want)
	}
}

func TestGenerateReadError(t *testing.T) {
	_, err := Generate(DefaultWords, bytes.NewReader([]byte{1, 2}))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Generate with short reader error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestGenerateDistribution(t *testing.T) {
	const n = 20000
	seen := make(map[int]bool)
	for range n {
		c, err := Generate(MinWords, nil)
		if err != nil {
			t.Fatal(err)
		}
		ch := c.Channel()
		if ch < 0 || ch > 2047 {
			t.Fatalf("Channel() = %d out of range", ch)
		}
		seen[ch] = true
	}
	// Expected about 2048*(1-exp(-20000/2048)) ≈ 2047.9 distinct channels.
	if len(seen) <= 1900 {
		t.Errorf("%d codes covered only %d distinct channels", n, len(seen))
	}
}

func TestPassword(t *testing.T) {
	const canon = "abandon-ability-able-about"
	want := sha256.Sum256([]byte("pcp/1 password" + canon))

	c, err := Parse(canon)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Password()
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("Password() = %x, want %x", got, want)
	}
	if len(got) != 32 {
		t.Errorf("len(Password()) = %d, want 32", len(got))
	}

	// Modifying the result must not affect later calls.
	got[0] ^= 0xff
	if !bytes.Equal(c.Password(), want[:]) {
		t.Error("Password() shares its result between calls")
	}

	for _, typed := range []string{"ABAN abil, able. about", "  abandon__ability-ABLE-abou "} {
		d, err := Parse(typed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Password(), want[:]) {
			t.Errorf("Parse(%q).Password() differs from canonical", typed)
		}
	}

	others := []string{
		"abandon-ability-able-above",
		"ability-abandon-able-about",
		"abandon-ability-able",
		"abandon-ability-able-about-abandon",
	}
	for _, s := range others {
		d, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(d.Password(), want[:]) {
			t.Errorf("%q has the same password as %q", s, canon)
		}
	}
}

func TestSecretBitsAndGuessBudget(t *testing.T) {
	tests := []struct {
		words  int
		bits   int
		budget int
	}{
		{3, 22, 4},
		{4, 33, 8589},
		{5, 44, 17592186},
	}
	for _, tt := range tests {
		c, err := Generate(tt.words, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.SecretBits(); got != tt.bits {
			t.Errorf("%d words: SecretBits() = %d, want %d", tt.words, got, tt.bits)
		}
		if got := c.GuessBudget(); got != tt.budget {
			t.Errorf("%d words: GuessBudget() = %d, want %d", tt.words, got, tt.budget)
		}
	}

	prev := 0
	for n := MinWords; n <= MaxWords; n++ {
		c, err := Generate(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := c.GuessBudget()
		if b < 3 || b < prev {
			t.Errorf("%d words: GuessBudget() = %d, previous %d", n, b, prev)
		}
		want := new(big.Int).Lsh(big.NewInt(1), uint(11*(n-1)))
		want.Quo(want, big.NewInt(1e6))
		if want.IsInt64() && want.Int64() <= math.MaxInt {
			if int64(b) != max(3, want.Int64()) {
				t.Errorf("%d words: GuessBudget() = %d, want %v", n, b, want)
			}
		} else if b != math.MaxInt {
			t.Errorf("%d words: GuessBudget() = %d, want saturation at MaxInt", n, b)
		}
		prev = b
	}
	c, _ := Generate(MaxWords, nil)
	if c.GuessBudget() != math.MaxInt {
		t.Errorf("%d words: GuessBudget() = %d, want MaxInt", MaxWords, c.GuessBudget())
	}
}

func TestZeroCode(t *testing.T) {
	var c Code
	if !c.IsZero() {
		t.Error("IsZero() = false for zero Code")
	}
	if c.String() != "" || c.Words() != 0 || c.Channel() != -1 ||
		c.Password() != nil || c.SecretBits() != 0 || c.GuessBudget() != 0 {
		t.Errorf("zero Code: String %q, Words %d, Channel %d, Password %x, SecretBits %d, GuessBudget %d",
			c.String(), c.Words(), c.Channel(), c.Password(), c.SecretBits(), c.GuessBudget())
	}
}

func TestParseLongWordIsFast(t *testing.T) {
	in := strings.Repeat("q", 1<<20) + " " + strings.Repeat("z", maxCompareLen) + " able"
	start := time.Now()
	_, err := Parse(in)
	var uw *UnknownWordError
	if !errors.As(err, &uw) {
		t.Fatalf("error = %v, want *UnknownWordError", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Parse of a 1 MiB word took %v", d)
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"abandon-ability-able-about",
		"ABAN abil, able. about",
		"bubbel-ability-able",
		"act add zoo",
		"zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo-zoo",
		"abandon-\u00e1bility-able",
		"\xff\xfe\xfd",
		" -_.,",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if !c.IsZero() {
				t.Fatalf("Parse(%q) returned %q with error %v", s, c, err)
			}
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("Parse(%q) error message %q is not one line", s, msg)
			}
			return
		}
		if n := c.Words(); n < MinWords || n > MaxWords {
			t.Fatalf("Parse(%q) has %d words", s, n)
		}
		if ch := c.Channel(); ch < 0 || ch > 2047 {
			t.Fatalf("Parse(%q).Channel() = %d", s, ch)
		}
		canon := c.String()
		d, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not re-parse: %v", s, canon, err)
		}
		if d.String() != canon || d.Channel() != c.Channel() || !bytes.Equal(d.Password(), c.Password()) {
			t.Fatalf("Parse(%q) = %q re-parses as different code %q", s, canon, d)
		}
	})
}
