package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/logout"
)

// revokeTimeout bounds one revoke call, connection included.
const revokeTimeout = 15 * time.Second

func cmdRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "revoke --sub|--sid|--jti|--client|--session VALUE [--issuer ISS] [--reason TEXT] [--url URL]\n\n"+
		"The admin token is read from $OIDCGATE_ADMIN_TOKEN or --token-file (never a flag: flags show in ps).\n"+
		"The admin API URL is --url, else $OIDCGATE_ADMIN_URL, else "+defaultAdminURL(), stderr)
	var req logout.RevokeRequest
	fs.StringVar(&req.Sub, "sub", "", "revoke every credential of this subject issued until now")
	fs.StringVar(&req.SID, "sid", "", "revoke this IdP session id")
	fs.StringVar(&req.JTI, "jti", "", "revoke the token with this jti")
	fs.StringVar(&req.ClientID, "client", "", "revoke every token issued to this client_id until now")
	fs.StringVar(&req.Session, "session", "", "revoke this gateway session id")
	fs.StringVar(&req.Issuer, "issuer", "", "issuer the value belongs to (default: the gateway's only issuer)")
	fs.StringVar(&req.Reason, "reason", "", "free text recorded with the revocation")
	baseURL := fs.String("url", "", "base `URL` of the gateway's internal listener")
	tokenFile := fs.String("token-file", "", "read the admin token from this `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := 0
	for _, v := range []string{req.Sub, req.SID, req.JTI, req.ClientID, req.Session} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		fs.Usage()
		return fmt.Errorf("%w: give exactly one of --sub, --sid, --jti, --client, --session", errUsage)
	}
	token, err := adminToken(*tokenFile)
	if err != nil {
		return err
	}
	if *baseURL == "" {
		*baseURL = defaultAdminURL()
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	entry, err := logout.RevokeRemote(ctx, &http.Client{Timeout: revokeTimeout}, *baseURL, token, req)
	if err != nil {
		return fmt.Errorf("revocation failed: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(entry)
}

func defaultAdminURL() string {
	if u := os.Getenv("OIDCGATE_ADMIN_URL"); u != "" {
		return u
	}
	return "http://" + defaultInternalListen
}

func adminToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("OIDCGATE_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("%w: no admin token: set OIDCGATE_ADMIN_TOKEN or pass --token-file", errUsage)
}
