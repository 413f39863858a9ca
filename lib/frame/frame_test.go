package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xab}, MaxPayload)}
	types := []Type{Heartbeat, Data, Data}
	for i, p := range payloads {
		if err := Write(&buf, types[i], p); err != nil {
			t.Fatalf("write frame %d: %v", i, err)
		}
	}
	r := NewReader(&buf, MaxPayload)
	for i, want := range payloads {
		typ, got, err := r.Next()
		if err != nil {
			t.Fatalf("read frame %d: %v", i, err)
		}
		if typ != types[i] || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %v with %d bytes, want %v with %d", i, typ, len(got), types[i], len(want))
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

// A long stream is read without garbage: the receiver's memory stays flat
// only if reading a frame allocates nothing once the payload buffer is big
// enough.
func TestNextAllocatesNothing(t *testing.T) {
	one := Append(nil, Data, bytes.Repeat([]byte{7}, 1000))
	src := bytes.NewReader(one)
	r := NewReader(src, MaxPayload)
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(one)
		if _, p, err := r.Next(); err != nil || len(p) != 1000 {
			t.Fatalf("read: %d bytes, %v", len(p), err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Next allocated %.1f times a frame, want 0", allocs)
	}
}

func TestReaderReadsNoFurther(t *testing.T) {
	var buf bytes.Buffer
	Write(&buf, MAC, []byte("abc"))
	buf.WriteString("rest")
	if _, _, err := NewReader(&buf, 16).Next(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "rest" {
		t.Fatalf("reader consumed bytes beyond its frame: %q left", buf.String())
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		max   int
		want  error
	}{
		{"truncated header", []byte{'D', 0, 0}, 100, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{'D', 0, 0, 0, 5, 'a', 'b'}, 100, io.ErrUnexpectedEOF},
		{"over the reader's limit", []byte{'P', 0, 0, 8, 1}, 2048, ErrTooLarge},
		{"over MaxPayload", []byte{'D', 0xff, 0xff, 0xff, 0xff}, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewReader(bytes.NewReader(tt.input), tt.max).Next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteTooLarge(t *testing.T) {
	if err := Write(io.Discard, Data, make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func FuzzReader(f *testing.F) {
	var seed bytes.Buffer
	Write(&seed, Header, []byte(`{"kind":"raw","size":-1}`))
	Write(&seed, Data, []byte("hello"))
	Write(&seed, End, make([]byte, 40))
	f.Add(seed.Bytes(), 64)
	f.Add([]byte{'D', 0xff, 0xff, 0xff, 0xff}, 0)
	f.Fuzz(func(t *testing.T, input []byte, max int) {
		r := NewReader(bytes.NewReader(input), max)
		limit := max
		if limit <= 0 || limit > MaxPayload {
			limit = MaxPayload
		}
		consumed := 0
		for {
			_, p, err := r.Next()
			if err != nil {
				return
			}
			if len(p) > limit {
				t.Fatalf("payload of %d bytes over the limit %d", len(p), limit)
			}
			consumed += HeaderSize + len(p)
			if consumed > len(input) {
				t.Fatalf("read %d bytes from %d of input", consumed, len(input))
			}
		}
	})
}

func TestText(t *testing.T) {
	tests := map[string]string{
		"plain reason":            "plain reason",
		"fake\n" + "pcp: hint: x": "fake?pcp: hint: x",
		"\x1b[2J cleared":         "?[2J cleared",
		"bad \xff utf8":           "bad ? utf8",
		"résumé":                  "résumé",
		"right\u202eleft":         "right?left", // a bidirectional override
		"zero\u200bwidth":         "zero?width",
	}
	for in, want := range tests {
		if got := Text([]byte(in)); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	long := Text(bytes.Repeat([]byte("x"), 5000))
	if n := len([]rune(long)); n != MaxText+1 {
		t.Errorf("a 5000-byte message became %d characters, want %d and an ellipsis", n, MaxText)
	}
}
