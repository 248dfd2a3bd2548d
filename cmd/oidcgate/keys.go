package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oidcgate/oidcgate/logout"
)

// keysTimeout bounds one call of `oidcgate keys`.
const keysTimeout = 15 * time.Second

// maxKeysAnswer bounds what `oidcgate keys` reads of an answer.
const maxKeysAnswer = 8 << 20

const keysSynopsis = `keys create --owner NAME [--scope S]... [--route R]... [--expires-in DUR] [--description TEXT] [--json]
       oidcgate keys list [--owner NAME] [--json]
       oidcgate keys rotate ID [--grace DUR] [--json]
       oidcgate keys revoke ID [--json]

Calls the admin API (/admin/keys). A new key is printed once, on stdout; it
is never stored or shown again. The admin token is read from
$OIDCGATE_ADMIN_TOKEN or --token-file; the URL is --url, else
$OIDCGATE_ADMIN_URL, else ` + "http://" + defaultInternalListen

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: oidcgate %s\n", keysSynopsis)
		return fmt.Errorf("%w: missing subcommand (create, list, rotate, revoke)", errUsage)
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("keys "+sub, keysSynopsis, stderr)
	baseURL := fs.String("url", "", "base `URL` of the gateway's internal listener")
	tokenFile := fs.String("token-file", "", "read the admin token from this `file`")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	var create logout.CreateKeyRequest
	var scopes, routes listFlag
	var owner, grace string
	switch sub {
	case "create":
		fs.StringVar(&create.Owner, "owner", "", "the workload the key belongs to (sub and client_id of its requests)")
		fs.Var(&scopes, "scope", "a scope granted to the key (repeat)")
		fs.Var(&routes, "route", "limit the key to this route name (repeat; default: every api_keys route)")
		fs.StringVar(&create.ExpiresIn, "expires-in", "", "lifetime, e.g. 720h (default 90 days, at most api_keys.max_lifetime)")
		fs.StringVar(&create.Description, "description", "", "free text shown in listings")
	case "list":
		fs.StringVar(&owner, "owner", "", "list only this owner's keys")
	case "rotate":
		fs.StringVar(&grace, "grace", "", "how long the old key keeps working, e.g. 24h (default: it dies at once)")
	case "revoke":
	default:
		fmt.Fprintf(stderr, "Usage: oidcgate %s\n", keysSynopsis)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	// The id comes first or last: `keys rotate ID --grace 1h` or the reverse.
	var id string
	if (sub == "rotate" || sub == "revoke") && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if (sub == "rotate" || sub == "revoke") && id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if (sub == "rotate" || sub == "revoke") && id == "" {
		return fmt.Errorf("%w: %s needs the key's id", errUsage, sub)
	}
	token, err := adminToken(*tokenFile)
	if err != nil {
		return err
	}
	if *baseURL == "" {
		*baseURL = defaultAdminURL()
	}
	base, err := url.Parse(strings.TrimRight(*baseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("%w: --url: not an http(s) URL", errUsage)
	}
	var method, path string
	var body any
	switch sub {
	case "create":
		create.Scopes, create.Routes = scopes, routes
		method, path, body = http.MethodPost, logout.KeysPath, create
	case "list":
		method, path = http.MethodGet, logout.KeysPath
		if owner != "" {
			path += "?" + url.Values{"owner": {owner}}.Encode()
		}
	case "rotate":
		method, path, body = http.MethodPost, logout.KeysPath+"/"+url.PathEscape(id)+"/rotate", logout.RotateKeyRequest{Grace: grace}
	case "revoke":
		method, path = http.MethodDelete, logout.KeysPath+"/"+url.PathEscape(id)
	}
	ctx, cancel := context.WithTimeout(ctx, keysTimeout)
	defer cancel()
	answer, err := callKeys(ctx, method, base.String()+path, token, body)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(answer)
		return err
	}
	return printKeys(stdout, sub, answer)
}

// callKeys sends one admin API request and returns the answer's body, or
// an error carrying the API's error and description.
func callKeys(ctx context.Context, method, target, token string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: keysTimeout}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysAnswer))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(answer, &e)
		return nil, fmt.Errorf("admin API answered %d: %s %s", resp.StatusCode, printableText(e.Error), printableText(e.Description))
	}
	return answer, nil
}

// printableText drops control characters from a server-supplied string.
func printableText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// printKeys prints an answer for people: a new key on its own line
// first, then the record(s) as a table.
func printKeys(w io.Writer, sub string, answer []byte) error {
	var views []logout.KeyView
	switch sub {
	case "create", "rotate":
		var c logout.CreatedKey
		if err := json.Unmarshal(answer, &c); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		fmt.Fprintf(w, "%s\n\nThis key is shown once: store it now.\n\n", c.Key)
		views = []logout.KeyView{c.Record}
	case "list":
		var l logout.KeyList
		if err := json.Unmarshal(answer, &l); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		views = l.Keys
	case "revoke":
		var v logout.KeyView
		if err := json.Unmarshal(answer, &v); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		views = []logout.KeyView{v}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tSTATE\tSCOPES\tEXPIRES\tLAST USED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, printableText(v.Owner), v.State, strings.Join(v.Scopes, " "),
			v.ExpiresAt.Format(time.RFC3339), v.LastUsedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}
