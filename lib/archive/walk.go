package archive

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Selection chooses what of the paths given to Scan and Write is sent. A
// path given is always sent as it is, or fails; inside folders, entries
// that every receiver would refuse are left out (and counted), not fatal.
type Selection struct {
	// Exclude holds shell patterns (as path.Match): an entry inside a
	// folder whose name, or whose slash-separated path in the archive,
	// matches one is left out, a folder with everything in it.
	Exclude []string
	// Dereference sends what symlinks point to, as files and folders,
	// instead of the links (like tar -h).
	Dereference bool
}

// CheckPattern reports whether p is a valid pattern for Selection.Exclude.
func CheckPattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

func (s Selection) check() error {
	for _, p := range s.Exclude {
		if err := CheckPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// excluded reports whether the entry named name in the archive (base, its
// last component) matches a pattern of Exclude.
func (s Selection) excluded(name, base string) bool {
	for _, p := range s.Exclude {
		p = strings.TrimSuffix(p, "/")
		if ok, _ := path.Match(p, base); ok {
			return true
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Skipped counts the entries inside folders that a walk left out.
type Skipped struct {
	Outside  int64 // symlinks whose target is absolute or outside the folder sent
	Special  int64 // FIFOs, sockets and devices
	Broken   int64 // with Dereference: symlinks to nothing, or back to a folder they are in
	Excluded int64 // matched by Selection.Exclude
}

// Total is the number of entries left out.
func (s Skipped) Total() int64 { return s.Outside + s.Special + s.Broken + s.Excluded }

// walkEntry is one file system object visited by walk.
type walkEntry struct {
	path string // on disk
	name string // in the archive: slash-separated, no trailing slash
	// info is from Lstat (Stat when follow); nil for a regular file (by
	// its directory entry) of a walk without fileInfo, which learns its
	// size when it opens it.
	info   fs.FileInfo
	dir    *os.File // the folder that holds it, open; nil for a top-level path
	base   string   // its name in dir
	follow bool     // it is sent for a symlink (Dereference): open through it
}

// isRegular says whether the entry is a regular file.
func (e walkEntry) isRegular() bool { return e.info == nil || e.info.Mode().IsRegular() }

// walker visits every top-level path and, for directories, their contents
// in lexical order, parents before children, calling fn for each entry
// sent. Without fileInfo, regular files below the top level are visited
// without an Lstat (info nil): one system call less for each of many small
// files.
type walker struct {
	ctx      context.Context
	sel      Selection
	fileInfo bool
	fn       func(walkEntry) error
	skipped  Skipped
	folders  []fs.FileInfo // the folders being walked, outermost first
	// perms, when not nil, fails the walk on a file or folder this
	// process may not read: Scan finds that out before any code is shown.
	perms *permissions
}

func (w *walker) walk(tops []topEntry) error {
	for _, t := range tops {
		info, err := os.Lstat(t.path)
		if err != nil {
			return fmt.Errorf("cannot send %s: %w", t.path, err)
		}
		e := walkEntry{path: t.path, name: t.name, info: info, base: t.path}
		if err := w.visit(e, true); err != nil {
			return err
		}
	}
	return nil
}

// visit sends e, or leaves it out (top: it was given, and fails instead).
func (w *walker) visit(e walkEntry, top bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if e.info == nil {
		return w.fn(e)
	}
	if e.info.Mode()&fs.ModeSymlink != 0 {
		if w.sel.Dereference {
			info, err := os.Stat(e.path)
			if err != nil {
				if top {
					return fmt.Errorf("cannot send %s: %w", e.path, err)
				}
				w.skipped.Broken++
				return nil
			}
			e.info, e.follow = info, true
		} else {
			target, err := os.Readlink(e.path)
			if err != nil {
				return fmt.Errorf("cannot send %s: %w", e.path, err)
			}
			// Refuse up front what every receiver would refuse after the data.
			if reason := checkLinkTarget(strings.Split(e.name, "/"), filepath.ToSlash(target)); reason != "" {
				if top {
					return fmt.Errorf("cannot send symlink %s -> %s: %s (receivers refuse it; -L sends what it points to)", e.path, target, reason)
				}
				w.skipped.Outside++
				return nil
			}
		}
	}
	mode := e.info.Mode()
	if mode.IsDir() && w.sel.Dereference && w.inside(e.info) {
		// Through links, a folder can hold itself.
		if top {
			return fmt.Errorf("cannot send %s: it leads back to a folder that holds it", e.path)
		}
		w.skipped.Broken++
		return nil
	}
	switch {
	case mode.IsRegular(), mode.IsDir(), mode&fs.ModeSymlink != 0:
	case top:
		return fmt.Errorf("cannot send %s: it is a %s; only regular files, directories and symlinks can be sent", e.path, typeName(mode))
	default:
		w.skipped.Special++
		return nil
	}
	if (mode.IsRegular() || mode.IsDir()) && !w.perms.readable(e.info) {
		what := "read it"
		if mode.IsDir() {
			what = "list and enter it"
		}
		return fmt.Errorf("cannot send %s: permission denied (you may not %s)", e.path, what)
	}
	if err := w.fn(e); err != nil {
		return err
	}
	if !mode.IsDir() {
		return nil
	}
	return w.folder(e)
}

// inside reports whether the folder info is one of those being walked.
func (w *walker) inside(info fs.FileInfo) bool {
	return slices.ContainsFunc(w.folders, func(f fs.FileInfo) bool { return os.SameFile(f, info) })
}

// folder visits the entries of the folder e.
func (w *walker) folder(e walkEntry) error {
	// The folder stays open while its entries are visited: its files are
	// opened relative to it.
	dir, err := os.Open(e.path)
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", e.path, err)
	}
	defer dir.Close()
	children, err := dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", e.path, err)
	}
	slices.SortFunc(children, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	w.folders = append(w.folders, e.info)
	defer func() { w.folders = w.folders[:len(w.folders)-1] }()
	for _, c := range children {
		child := walkEntry{
			path: filepath.Join(e.path, c.Name()),
			name: e.name + "/" + c.Name(),
			dir:  dir,
			base: c.Name(),
		}
		if hasControl(c.Name()) {
			return fmt.Errorf("cannot send %q: control or bidirectional character in name (receivers refuse such names)", child.path)
		}
		if w.sel.excluded(child.name, child.base) {
			w.skipped.Excluded++
			continue
		}
		if w.fileInfo || !c.Type().IsRegular() {
			info, err := c.Info()
			if err != nil {
				return fmt.Errorf("cannot send %s: %w", child.path, err)
			}
			child.info = info
		}
		if err := w.visit(child, false); err != nil {
			return err
		}
	}
	return nil
}
