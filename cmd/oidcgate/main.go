// Command oidcgate runs the gateway, its demo, and its operator tools.
//
// Exit codes: 0 success, 1 failure (invalid config, refused revocation,
// server error), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

const usage = `oidcgate: an identity-aware reverse proxy that enforces revocations.

Usage:
  oidcgate serve --config FILE       run the gateway
  oidcgate demo                      run a complete local demo (no config, no network)
  oidcgate check-config FILE         validate a config; list every problem
  oidcgate revoke --sub|--sid|--jti|--client|--session VALUE [--issuer ISS] [--reason TEXT]
                                     revoke through a running gateway's admin API
  oidcgate keys create|list|rotate|revoke ...
                                     manage API keys through the admin API (a new key is printed once)
  oidcgate verify-revocation --sub|--sid|--jti|--client|--session VALUE [--issuer ISS]
                                     check that every replica applied a revocation
                                     (exit 0 applied everywhere, 1 otherwise)
  oidcgate audit verify FILE...      check the audit log's hash chain (current and rotated files)
  oidcgate ssf-key rotate --config FILE [--grace 24h]
                                     new signing key for the gateway's SETs (the old one stays published)
  oidcgate version                   print the version

Run "oidcgate COMMAND --help" for a command's flags.
`

// errUsage marks errors that exit with status 2.
var errUsage = errors.New("usage error")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.TODO(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(ctx, rest, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "check-config":
		err = cmdCheckConfig(rest, stdout, stderr)
	case "revoke":
		err = cmdRevoke(ctx, rest, stdout, stderr)
	case "keys":
		err = cmdKeys(ctx, rest, stdout, stderr)
	case "verify-revocation":
		err = cmdVerifyRevocation(ctx, rest, stdout, stderr)
	case "audit":
		err = cmdAudit(rest, stdout, stderr)
	case "ssf-key":
		err = cmdSSFKey(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "oidcgate", version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "oidcgate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "oidcgate %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "oidcgate %s: %v\n", args[0], err)
		return 1
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: oidcgate %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps a flag error to errUsage (the FlagSet has
// already printed the message and usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", "serve --config FILE [--log-level debug|info|warn|error]", stderr)
	path := fs.String("config", "", "path of the YAML config `file` (required)")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return fmt.Errorf("invalid config %s:\n%w", *path, err)
	}
	log := newLogger(stderr, level)
	app, err := newGateway(cfg, log)
	if err != nil {
		return err
	}
	return app.run(ctx)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", "check-config FILE", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: exactly one config file is required", errUsage)
	}
	cfg, err := loadConfig(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%s is invalid:\n%w", fs.Arg(0), err)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", fs.Arg(0), w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", fs.Arg(0))
	return nil
}
