package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// requireChromium returns the path of a Chromium: it fails t when none is
// installed and CI is set, and skips t otherwise.
func requireChromium(t *testing.T) string {
	t.Helper()
	requireBinary(t)
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found (install it: apt-get install -y chromium)")
	}
	t.Skip("chromium not found; skipping (set CI to make this fail)")
	return ""
}

// shotsDir is where the console e2e test writes its screenshots:
// $OIDCGATE_CONSOLE_SHOTS, else oidcgate-console-shots in the system's
// temporary directory. go test keeps it (a t.TempDir is deleted).
func shotsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OIDCGATE_CONSOLE_SHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "oidcgate-console-shots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots: %s", dir)
	return dir
}

// browserCtx starts a headless Chromium for t, closed when t ends. The
// browser's context has no deadline (chromedp: a deadline on the first
// call ends the browser); each step gets its own (see step).
func browserCtx(t *testing.T, chromium string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // the CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// stepTimeout bounds one browser step.
const stepTimeout = 60 * time.Second

// runStep runs one browser action within stepTimeout.
func runStep[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(sctx, a)
}

// consoleGateway runs a gateway with an audit log, the e2e token (every
// role) and a read-only token, and extra top-level YAML.
func consoleGateway(t *testing.T, extra string) (*gatewayProc, string) {
	t.Helper()
	iss := newTestIssuer(t)
	reader := "reader-" + randHex(t, 16)
	dir := t.TempDir()
	cfg := gatewayConfig{issuer: iss.srv.URL, upstream: "http://127.0.0.1:1", dataDir: dir, adminToken: randHex(t, 16),
		extraYAML: fmt.Sprintf("audit:\n  path: %q\n", filepath.Join(dir, "audit.jsonl")) + extra}
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		return strings.Replace(cfg.configYAML(listen, internal), "      token: ${E2E_ADMIN_TOKEN}\n",
			"      token: ${E2E_ADMIN_TOKEN}\n    - name: reader\n      token: "+reader+"\n      roles: [read]\n", 1)
	})
	return gw, reader
}

// statusOf asks the admin API about the revocation of sub.
func statusOf(t *testing.T, gw *gatewayProc, sub string) map[string]any {
	t.Helper()
	r := do(t, gw.client, http.MethodGet, gw.internal+"/admin/revocations/status?kind=sub&value="+url.QueryEscape(sub), gw.cfg.adminToken, nil, nil)
	var st map[string]any
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &st) != nil {
		t.Fatalf("status of %s: %d %s", sub, r.status, r.body)
	}
	return st
}

// TestConsoleBrowser drives the console in a real headless Chromium
// against the built binary (issue 17, "Tests that must exist").
func TestConsoleBrowser(t *testing.T) {
	chromium := requireChromium(t)
	shots := shotsDir(t)
	gw, reader := consoleGateway(t, "")
	ctx := browserCtx(t, chromium)
	ui := gw.internal + "/admin/ui/"
	var dialogs atomic.Int32
	go func() {
		for _, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			dialogs.Add(1)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	fail := func(what string, err error) {
		t.Helper()
		loc, _ := runStep(ctx, chromedp.Location())
		body, _ := runStep(ctx, chromedp.Text(css("body")))
		t.Fatalf("%s: %v (at %s: %.500s)\ngateway stderr:\n%.3000s", what, err, loc, body, gw.stderr.String())
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := runStep(ctx, chromedp.Steps(steps...)); err != nil {
			fail(what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := runStep(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := runStep(ctx, chromedp.Text(css(sel)))
		if err != nil {
			fail("text of "+sel, err)
		}
		return s
	}
	eval := func(what, js string) bool {
		t.Helper()
		v, err := runStep(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			fail(what, err)
		}
		return v
	}
	location := func() string {
		t.Helper()
		s, err := runStep(ctx, chromedp.Location())
		if err != nil {
			fail("location", err)
		}
		return s
	}
	signIn := func(token string) {
		t.Helper()
		do("sign in", chromedp.Navigate(ui+"signin"), chromedp.WaitVisible(css("#token")),
			chromedp.SendKeys(css("#token"), token), chromedp.Click(css("#signin")),
			chromedp.WaitVisible(css("#nav-overview")))
	}

	// A signed-out browser is sent to the sign-in page.
	do("open the console", chromedp.Navigate(ui), chromedp.WaitVisible(css("#token")))
	if loc := location(); !strings.HasPrefix(loc, ui+"signin") {
		t.Fatalf("signed out: at %s; want the sign-in page", loc)
	}
	shot("01-signin")
	signIn(gw.cfg.adminToken)
	do("overview", chromedp.WaitVisible(css("#entries")))
	shot("02-overview")

	// Revoke a user from the form, with a reason made to run script, and
	// watch every target reach done without a reload.
	reason := `<script>window.__xss=1;alert(1)</script>"><img src=x onerror="window.__xss=2;alert(2)">`
	do("revoke", chromedp.Navigate(ui+"revoke"), chromedp.WaitVisible(css("#revoke-form")),
		chromedp.SetValue(css("#kind"), "sub"),
		chromedp.SendKeys(css("#value"), "bob"),
		chromedp.SendKeys(css("#reason"), reason),
		chromedp.Click(css("#revoke")),
		chromedp.WaitVisible(css("#follow")))
	if _, err := runStep(ctx, chromedp.Poll[bool](`document.getElementById("progress").textContent.startsWith("complete")`, chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		fail("follow until done", err)
	}
	if got := text("#reason"); got != reason {
		t.Errorf("reason shown: got %q; want the text %q", got, reason)
	}
	targets := text("#targets")
	if !strings.Contains(targets, "replica") || !strings.Contains(targets, "done") || strings.Contains(targets, "pending") {
		t.Errorf("targets: got %q; want every target done", targets)
	}
	shot("03-revoke-followed")
	if st := statusOf(t, gw, "bob"); st["complete"] != true {
		t.Errorf("API status of bob: %v; want complete", st)
	}

	// Find it by search; see the audit record; verify the chain.
	do("search", chromedp.Navigate(ui+"search"), chromedp.WaitVisible(css("#search-form")),
		chromedp.SendKeys(css("#value"), "bob"), chromedp.Click(css("#search")),
		chromedp.WaitVisible(css(".result")))
	if got := text(".result"); !strings.Contains(got, "sub bob") || !strings.Contains(got, "admin:e2e") || !strings.Contains(got, reason) {
		t.Errorf("search result: got %q; want bob's revocation by admin:e2e with the reason as text", got)
	}
	shot("04-search")
	do("audit", chromedp.Navigate(ui+"audit"), chromedp.WaitVisible(css("#records")))
	if got := text("#records"); !strings.Contains(got, "revocation") || !strings.Contains(got, "admin:e2e") || !strings.Contains(got, reason) {
		t.Errorf("audit records: got %q; want the revocation record", got)
	}
	shot("05-audit")
	do("verify chain", chromedp.Click(css("#verify")), chromedp.WaitVisible(css("#verdict")))
	if got := text("#verdict"); !strings.HasPrefix(got, "Intact") {
		t.Errorf("verify: got %q; want intact", got)
	}
	shot("06-verify")
	do("keys", chromedp.Navigate(ui+"keys"), chromedp.WaitVisible(css("#create-form")),
		chromedp.SendKeys(css("#owner"), "batch-job"), chromedp.Click(css("#create")),
		chromedp.WaitVisible(css("#new-key")))
	if got := text("#new-key"); !strings.HasPrefix(got, "oag_") {
		t.Errorf("new key: got %q", got)
	}
	shot("07-keys")
	do("overview after", chromedp.Navigate(ui), chromedp.WaitVisible(css("#chart-count")))
	if n := eval("chart bars", `document.querySelectorAll("#chart-count rect").length > 1 && document.querySelectorAll("#chart-latency rect").length > 1`); !n {
		t.Error("the overview's charts show no revocation")
	}
	shot("10-overview-after-revoking")

	// Nothing the payload held ran: no dialog, no global, no image.
	do("search page", chromedp.Navigate(ui+"search?kind=sub&value=bob"), chromedp.WaitVisible(css(".result")))
	if ran := eval("xss check", `window.__xss !== undefined || document.querySelectorAll("img").length > 0`); ran || dialogs.Load() != 0 {
		t.Errorf("the reason ran as markup: global or image %v, %d dialog(s)", ran, dialogs.Load())
	}

	// A missing or wrong CSRF token is 403 and revokes nothing.
	for _, tc := range []struct{ name, js string }{
		{"missing", `(document.querySelector('#revoke-form input[name=csrf]').remove(), true)`},
		{"wrong", `(document.querySelector('#revoke-form input[name=csrf]').value = 'forged', true)`},
	} {
		sub := "csrf-" + tc.name
		do("CSRF "+tc.name, chromedp.Navigate(ui+"revoke"), chromedp.WaitVisible(css("#revoke-form")),
			chromedp.SendKeys(css("#value"), sub), chromedp.SendKeys(css("#reason"), "x"))
		eval("CSRF "+tc.name, tc.js)
		do("CSRF "+tc.name+" submit", chromedp.Click(css("#revoke")), chromedp.WaitVisible(css("#error")))
		if got := text("h1"); got != "403" || !strings.Contains(text("#error"), "CSRF") {
			t.Errorf("CSRF %s: got %q %q; want 403 naming the CSRF token", tc.name, got, text("#error"))
		}
		if st := statusOf(t, gw, sub); st["verdict"] != "not_revoked" {
			t.Errorf("CSRF %s: %s was revoked", tc.name, sub)
		}
	}
	shot("08-csrf-refused")

	// Signing out sends the browser to the sign-in page, and it stays
	// signed out.
	do("sign out", chromedp.Navigate(ui), chromedp.WaitVisible(css("#signout")),
		chromedp.Click(css("#signout")), chromedp.WaitVisible(css("#token")),
		chromedp.Navigate(ui+"search"), chromedp.WaitVisible(css("#token")))
	if loc := location(); !strings.HasPrefix(loc, ui+"signin") {
		t.Errorf("signed out: at %s; want the sign-in page", loc)
	}

	// A read token sees no revoke form; the page is 403; a forged POST
	// with its own valid CSRF token is 403 and revokes nothing.
	signIn(reader)
	if eval("reader nav", `document.getElementById("nav-revoke") !== null`) {
		t.Error("a read token is offered the revoke page")
	}
	do("reader revoke page", chromedp.Navigate(ui+"revoke"), chromedp.WaitVisible(css("#error")))
	if got := text("#error"); !strings.Contains(got, `lacks the role "revoke"`) {
		t.Errorf("reader on the revoke page: got %q; want 403 naming revoke", got)
	}
	shot("09-reader-forbidden")
	do("overview as reader", chromedp.Navigate(ui), chromedp.WaitVisible(css("#signout")))
	eval("forged POST", `(function () {
		var f = document.createElement("form");
		f.method = "post"; f.action = "/admin/ui/revoke";
		[["csrf", document.querySelector("input[name=csrf]").value], ["kind", "sub"], ["value", "mallory"], ["reason", "forged"]].forEach(function (p) {
			var i = document.createElement("input"); i.type = "hidden"; i.name = p[0]; i.value = p[1]; f.appendChild(i);
		});
		document.body.appendChild(f); f.submit();
		return true;
	})()`)
	do("forged POST answer", chromedp.WaitVisible(css("#error")))
	if got := text("h1"); got != "403" {
		t.Errorf("forged POST by a read token: got %q; want 403", got)
	}
	if st := statusOf(t, gw, "mallory"); st["verdict"] != "not_revoked" {
		t.Error("the forged POST revoked mallory")
	}
	if strings.Contains(gw.stderr.String(), gw.cfg.adminToken) || strings.Contains(gw.stderr.String(), reader) {
		t.Error("a token shows in the gateway's log")
	}
	if !strings.Contains(gw.stderr.String(), "role missing") {
		t.Error("the refusal is not in the gateway's log")
	}
}

// TestConsoleBrowserSessionExpires: with console.session_ttl 2s the
// browser is sent to the sign-in page once the session is over.
func TestConsoleBrowserSessionExpires(t *testing.T) {
	chromium := requireChromium(t)
	gw, reader := consoleGateway(t, "console:\n  session_ttl: 2s\n")
	ctx := browserCtx(t, chromium)
	ui := gw.internal + "/admin/ui/"
	if _, err := runStep(ctx, chromedp.Steps(chromedp.Navigate(ui+"signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), reader), chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#nav-search")))); err != nil {
		t.Fatal(err)
	}
	var loc string
	expired := waitFor(30*time.Second, func() bool {
		if _, err := runStep(ctx, chromedp.Navigate(ui+"search")); err != nil {
			t.Fatal(err)
		}
		l, err := runStep(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		loc = l
		return strings.HasPrefix(loc, ui+"signin")
	})
	if !expired {
		t.Errorf("after the session's 2s: still at %s; want the sign-in page", loc)
	}
}
