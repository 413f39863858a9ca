package archive

import (
	"io"
	"os"
)

// Durable is the ExtractOptions.Sync of a receiver whose success must mean
// that the files survive a crash of the machine a moment later: with tree,
// everything under path is written to stable storage (an fsync of every
// file and directory under path; on Linux, for a tree of more than
// fewEntries, one syncfs(2) of the file system instead, which also writes
// what other programs left there);
// without, the directory path itself (its entries: the names moved into
// it), which Windows cannot sync and skips.
func Durable(path string, tree bool) error {
	if tree {
		return syncTree(path)
	}
	return syncDir(path)
}

// writebackEvery is how much of a file is written before its writeback to
// the disk is started, when the extraction is to be durable: the disk then
// works while the transfer goes on, and the sync at the end finds little
// left to write.
const writebackEvery = 8 << 20

// writeback passes writes on to f and starts the writeback of each
// writebackEvery bytes (on Linux; elsewhere it only writes).
type writeback struct {
	f        *os.File
	off, due int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.due >= writebackEvery {
		startWriteback(w.f, w.due, w.off-w.due)
		w.due = w.off
	}
	return n, err
}

// finish starts the writeback of what is left (of small files too: over a
// tree of 100,000 small files that took the final sync from 0.7 s to 0.1-0.3
// s here).
func (w *writeback) finish() {
	if w.off > w.due {
		startWriteback(w.f, w.due, w.off-w.due)
	}
}

var _ io.Writer = (*writeback)(nil)
