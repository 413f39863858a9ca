//go:build !linux && !darwin

package archive

// renameNoReplace renames oldpath to newpath, failing with an error that
// matches fs.ErrExist if newpath exists. Here the check and the rename are
// two steps.
func renameNoReplace(oldpath, newpath string) error {
	return renameCheckFirst(oldpath, newpath)
}
