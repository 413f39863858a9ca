package compress

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// readAll decodes stream with a Reader that reads in pieces of piece bytes.
func readAll(stream []byte, piece int) ([]byte, error) {
	z := NewReader(bytes.NewReader(stream), 128<<20)
	defer z.Close()
	var out bytes.Buffer
	buf := make([]byte, piece)
	for {
		n, err := z.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

func TestReaderTakesEveryKindOfStream(t *testing.T) {
	text := sourceText(t, 9<<20+321)
	random := randomData(t, 3<<20+7)
	mixed := append(append(bytes.Clone(text[:5<<20]), random...), text[:100]...)
	// Raw blocks, then compressed ones, in one frame.
	rawFirst := append(bytes.Clone(random[:1<<20]), text...)
	streams := map[string][]byte{}
	for name, data := range map[string][]byte{"text": text, "random": random, "mixed": mixed, "raw first": rawFirst} {
		for _, level := range []int{Store, Fastest, Best, Auto} {
			var out bytes.Buffer
			compressAll(t, &out, Options{Level: level}, data, 200_000)
			streams[name+"/writer"] = out.Bytes()
			if got, err := readAll(out.Bytes(), 100_000); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s at level %d: %d bytes of %d decoded, %v", name, level, len(got), len(data), err)
			}
		}
		// One long frame, as klauspost/compress's streaming encoder and the
		// zstd tool write them, with a checksum.
		var out bytes.Buffer
		enc, _ := zstd.NewWriter(&out)
		enc.Write(data)
		enc.Close()
		if got, err := readAll(out.Bytes(), 64<<10); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s in one frame: %d bytes of %d decoded, %v", name, len(got), len(data), err)
		}
		if zstdCLI, err := exec.LookPath("zstd"); err == nil {
			cmd := exec.Command(zstdCLI, "-1", "-c")
			cmd.Stdin = bytes.NewReader(data)
			stream, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(stream, 64<<10); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s from zstd -1: %d bytes of %d decoded, %v", name, len(got), len(data), err)
			}
		}
	}
	// A skippable frame between two frames, and an empty stored frame.
	var s stored
	s.begin(nil)
	empty := s.end()
	skip := []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}
	a := bytes.Clone(streams["text/writer"])
	stream := append(append(append(append([]byte{}, a...), skip...), empty...), a...)
	got, err := readAll(stream, 1000)
	if err != nil || !bytes.Equal(got, append(bytes.Clone(text), text...)) {
		t.Fatalf("frames, a skippable frame, an empty frame, frames: %d bytes, %v", len(got), err)
	}
}

func TestReaderRefusesWhatIsNotZstd(t *testing.T) {
	var out bytes.Buffer
	compressAll(t, &out, Options{Level: Store}, randomData(t, 300<<10), 1<<20)
	good := out.Bytes()
	lie := bytes.Clone(good)
	lie[5]++ // the stated size no longer matches the blocks
	big := bytes.Clone(good)
	big[storedHeader] |= 0xF8 // a first raw block above 128 KiB
	reserved := bytes.Clone(good)
	reserved[4] |= 0x08
	for name, stream := range map[string][]byte{
		"not zstd":       []byte("hello, this is plain text"),
		"cut short":      good[:len(good)-10],
		"size mismatch":  lie,
		"oversize block": big,
		"reserved bit":   reserved,
		"trailing junk":  append(bytes.Clone(good), "junk"...),
	} {
		if _, err := readAll(stream, 64<<10); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: decoded without an error (%v)", name, err)
		}
	}
}

// FuzzReader checks the Reader against klauspost/compress's decoder: on
// any input, what the Reader decodes without an error, the decoder decodes
// to the same bytes.
func FuzzReader(f *testing.F) {
	for _, level := range []int{Store, Fastest} {
		var out bytes.Buffer
		zw, _ := NewWriter(&out, Options{Level: level})
		zw.Write(bytes.Repeat([]byte("pcp fuzz "), 3000))
		zw.Close()
		f.Add(out.Bytes())
	}
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 1, 0, 0, 0, 9, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, stream []byte) {
		got, err := readAll(stream, 4096)
		if err != nil {
			return
		}
		d, _ := zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderMaxMemory(128<<20))
		defer d.Close()
		want, werr := io.ReadAll(d)
		if werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("Reader decoded %d bytes without an error; klauspost/compress: %d bytes, %v", len(got), len(want), werr)
		}
	})
}
