package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/oidcgate/oidcgate/propagate"
)

// cmdSSFKey runs `oidcgate ssf-key rotate`: a new SET signing key in the
// config's data_dir; the one that signed stays in the JWKS for --grace.
// A running gateway picks the new key up without a restart.
func cmdSSFKey(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ssf-key rotate", "ssf-key rotate --config FILE [--grace DURATION]\n\n"+
		"Adds a new signing key for the gateway's SETs to data_dir/"+propagate.KeyFile+" (creating the file\n"+
		"if there is none) and retires the current one, which stays in the published JWKS for the\n"+
		"grace period. Run it on every replica's data_dir (or copy the file to each).", stderr)
	if len(args) == 0 || args[0] != "rotate" {
		fs.Usage()
		return fmt.Errorf("%w: want ssf-key rotate", errUsage)
	}
	path := fs.String("config", "", "path of the YAML config `file` (required; its data_dir holds the key file)")
	grace := fs.Duration("grace", propagate.DefaultKeyGrace, "how long the retired key stays in the JWKS")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	if *grace <= 0 {
		return fmt.Errorf("%w: --grace must be positive", errUsage)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return fmt.Errorf("invalid config %s:\n%w", *path, err)
	}
	file := filepath.Join(cfg.DataDir, propagate.KeyFile)
	kid, err := propagate.RotateKeys(file, *grace, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new ssf signing key %s in %s; the previous one stays in the JWKS for %s\n", kid, file, *grace)
	return nil
}
