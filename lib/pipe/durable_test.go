package pipe

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSyncFileSyncsOnlyRegularFiles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("data")
	if synced, err := SyncFile(f); !synced || err != nil {
		t.Fatalf("a regular file: synced %v, %v", synced, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if synced, err := SyncFile(w); synced || err != nil {
		t.Fatalf("a pipe: synced %v, %v; want neither", synced, err)
	}
	if synced, err := SyncFile(&bytes.Buffer{}); synced || err != nil {
		t.Fatalf("a buffer: synced %v, %v; want neither", synced, err)
	}
	f.Close()
	if synced, err := SyncFile(f); synced {
		t.Fatalf("a closed file: synced %v, %v", synced, err)
	}
}
