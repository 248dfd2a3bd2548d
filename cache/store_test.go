package cache_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/storetest"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func openMemory(t *testing.T, cfg cache.Config) storetest.Store {
	t.Helper()
	cfg.Path = ""
	s, err := cache.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func openBolt(t *testing.T, cfg cache.Config) storetest.Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "revocations.db")
	}
	s, err := cache.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestStoreMemory(t *testing.T) { storetest.Run(t, openMemory) }

func TestStoreBolt(t *testing.T) { storetest.Run(t, openBolt) }

func TestStoreBoltDurable(t *testing.T) { storetest.RunDurable(t, openBolt) }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  cache.Config
		want []string
	}{
		{"zero", cache.Config{}, nil},
		{"full", cache.Config{Path: "x.db", ClockSkew: time.Minute, SweepInterval: time.Second}, nil},
		{"negative skew", cache.Config{ClockSkew: -1}, []string{"clock_skew: "}},
		{"everything wrong", cache.Config{ClockSkew: -1, SweepInterval: -time.Second}, []string{"clock_skew: ", "sweep_interval: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != (tt.want != nil) {
				t.Fatalf("Validate() = %v; want problems %q", err, tt.want)
			}
			if err == nil {
				return
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() = %q; want %d problems", err, len(tt.want))
			}
			for i, prefix := range tt.want {
				if !strings.HasPrefix(lines[i], prefix) {
					t.Errorf("problem %d = %q; want prefix %q", i, lines[i], prefix)
				}
			}
			if _, oerr := cache.Open(tt.cfg); oerr == nil {
				t.Errorf("Open accepted a config Validate refused")
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := cache.Open(cache.Config{Path: dir}); err == nil {
		t.Errorf("Open(a directory) = nil error; want an error")
	}
	if _, err := cache.Open(cache.Config{Path: filepath.Join(dir, "missing", "x.db")}); err == nil {
		t.Errorf("Open(in a missing directory) = nil error; want an error")
	}
}

// killHelperEnv makes TestKillHelper act as the child of TestDurableAcrossKill.
const killHelperEnv = "OIDCGATE_CACHE_KILL_HELPER_PATH"

var killT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// killEntry is the i-th entry the child revokes; the parent rebuilds it to
// compare.
func killEntry(i int) cache.Entry {
	e := cache.Entry{
		Issuer:    "https://idp.example.com",
		Kind:      cache.Kinds[i%len(cache.Kinds)],
		Value:     fmt.Sprintf("kill-%06d", i),
		RevokedAt: killT0.Add(time.Duration(i) * time.Nanosecond),
		ExpiresAt: killT0.Add(time.Hour + time.Duration(i)*time.Millisecond),
		Reason:    "reason-" + strconv.Itoa(i%3),
		Initiator: "admin:kill",
	}
	if e.Kind.Issuerless() {
		e.Issuer = ""
	}
	return e
}

// TestKillHelper is the child process of TestDurableAcrossKill: it revokes
// entries from several goroutines and prints "ack N" once Revoke of entry N
// returned, until it is killed or its stdin closes.
func TestKillHelper(t *testing.T) {
	path := os.Getenv(killHelperEnv)
	if path == "" {
		t.Skip("child process of TestDurableAcrossKill")
	}
	s, err := cache.Open(cache.Config{Path: path, Clock: clocktest.New(killT0)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	const workers = 8
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range workers {
		go func() {
			for i := w; i < 1_000_000; i += workers {
				if _, err := s.Revoke(context.Background(), killEntry(i)); err != nil {
					fmt.Fprintf(os.Stderr, "Revoke: %v\n", err)
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d\n", i)
				err := out.Flush()
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // returns when the parent goes away
}

// TestDurableAcrossKill kills a process with SIGKILL while it revokes, then
// opens its file: every revocation whose Revoke had returned is there, with
// every field intact. This is the crash the fsync before return is for.
func TestDurableAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "revocations.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]bool{}
	sc := bufio.NewScanner(stdout)
	var other []string
	for len(acked) < 300 && sc.Scan() {
		n, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			other = append(other, sc.Text())
			continue
		}
		i, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked[i] = true
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acknowledged %d revocations before ending; stdout %q, stderr %q", len(acked), other, stderr.String())
	}

	s, err := cache.Open(cache.Config{Path: path, Clock: clocktest.New(killT0)})
	if err != nil {
		t.Fatalf("Open after kill: %v", err)
	}
	defer s.Close()
	for i := range acked {
		want := killEntry(i)
		got, ok := s.Get(want.Issuer, want.Kind, want.Value)
		if !ok {
			t.Errorf("acknowledged revocation %d lost", i)
			continue
		}
		if !got.RevokedAt.Equal(want.RevokedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Reason != want.Reason || got.Initiator != want.Initiator {
			t.Errorf("revocation %d = %+v; want %+v", i, got, want)
		}
	}
	t.Logf("%d acknowledged revocations survived SIGKILL; %d entries in the file", len(acked), s.Len())
}

func TestRevokeAfterCloseRace(t *testing.T) {
	s, err := cache.Open(cache.Config{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var wg, started sync.WaitGroup
	started.Add(8)
	for w := range 8 {
		wg.Go(func() {
			var once sync.Once
			signal := func() { once.Do(started.Done) }
			defer signal()
			for i := 0; ; i++ {
				if i == 1 {
					signal()
				}
				e := cache.Entry{Kind: cache.KindSession, Value: fmt.Sprintf("%d-%d", w, i), RevokedAt: now, ExpiresAt: now.Add(time.Hour)}
				_, err := s.Revoke(context.Background(), e)
				if errors.Is(err, cache.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Revoke: %v", err)
					return
				}
			}
		})
	}
	started.Wait() // every writer has one Revoke done and more in flight
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
}

func TestKeysMemory(t *testing.T) { storetest.RunKeys(t, openMemory) }

func TestKeysBolt(t *testing.T) { storetest.RunKeys(t, openBolt) }

func TestKeysBoltDurable(t *testing.T) { storetest.RunKeysDurable(t, openBolt) }
