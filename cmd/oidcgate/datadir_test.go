package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareDataDir(t *testing.T) {
	root := t.TempDir()
	t.Run("missing: created 0700 with its parents", func(t *testing.T) {
		dir := filepath.Join(root, "a", "b", "data")
		if err := prepareDataDir(dir); err != nil {
			t.Fatalf("got %v; want nil", err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("mode: got %04o; want 0700", got)
		}
		if err := prepareDataDir(dir); err != nil {
			t.Errorf("second call: got %v; want nil", err)
		}
	})
	for _, mode := range []os.FileMode{0o770, 0o707, 0o777, 0o720} {
		t.Run("writable by others "+mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			err := prepareDataDir(dir)
			if err == nil || !strings.Contains(err.Error(), "lets other users write") || !strings.Contains(err.Error(), dir) {
				t.Errorf("got %v; want a refusal naming %s and why", err, dir)
			}
		})
	}
	t.Run("owned by another user", func(t *testing.T) {
		dir := t.TempDir()
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = checkDataDir(dir, fi, os.Geteuid()+1)
		if err == nil || !strings.Contains(err.Error(), "owned by uid") {
			t.Errorf("got %v; want a refusal naming the owner", err)
		}
	})
	t.Run("a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := prepareDataDir(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("got %v; want not a directory", err)
		}
	})
}
