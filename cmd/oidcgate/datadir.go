package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// prepareDataDir makes dir ready to hold the revocation store: a missing
// dir is created 0700 with its parents; an existing one must be a
// directory owned by this process's user and writable by no one else,
// since whoever can write there can delete revocations.
func prepareDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data_dir %s: cannot create it: %w", dir, err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	return checkDataDir(dir, fi, os.Geteuid())
}

// checkDataDir judges fi, the stat of data_dir, for the user uid.
func checkDataDir(dir string, fi fs.FileInfo, uid int) error {
	if !fi.IsDir() {
		return fmt.Errorf("data_dir %s: not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("data_dir %s: mode %04o lets other users write there (they could delete revocations); run chmod go-w %s", dir, perm, dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("data_dir %s: owned by uid %d, not by uid %d that runs oidcgate; run chown or choose another data_dir", dir, st.Uid, uid)
	}
	return nil
}
