package logout

import (
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
)

// auditResponse is the body of GET /admin/audit.
type auditResponse struct {
	Records []audit.Record `json:"records"`
}

// AuditHandler serves GET /admin/audit: the records of au, newest first,
// authenticated exactly as the admin revocation API; it needs the role
// audit. Query parameters:
// sub, trigger, since and until (RFC 3339), limit (1 to 1000, default
// 100). A nil au is not allowed.
func (a *Admin) AuditHandler(au *audit.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.auth.Authorize(w, r, RoleAudit); !ok {
			return
		}
		if r.Method != http.MethodGet {
			// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
			w.Header().Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
			return
		}
		q, err := parseAuditQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		recs, err := au.Query(r.Context(), q)
		if err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelError, "reading the audit log failed", slog.Any("error", err))
			writeError(w, http.StatusInternalServerError, "server_error", "audit log not read")
			return
		}
		if recs == nil {
			recs = []audit.Record{}
		}
		writeJSON(w, http.StatusOK, auditResponse{Records: recs})
	})
}

func parseAuditQuery(rawQuery string) (audit.Query, error) {
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return audit.Query{}, badRequest("query is not valid")
	}
	var q audit.Query
	for name, vs := range vals {
		if len(vs) != 1 {
			return audit.Query{}, badRequest("%s: given more than once", truncate(name, 32))
		}
		v := vs[0]
		switch name {
		case "sub":
			if v == "" || len(v) > cache.MaxValueLen {
				return audit.Query{}, badRequest("sub: empty or longer than %d bytes", cache.MaxValueLen)
			}
			q.Sub = v
		case "trigger":
			if !slices.Contains(audit.Triggers, v) {
				return audit.Query{}, badRequest("trigger: not one of %s", strings.Join(audit.Triggers, ", "))
			}
			q.Trigger = v
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return audit.Query{}, badRequest("%s: not an RFC 3339 time", name)
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > audit.MaxQueryLimit {
				return audit.Query{}, badRequest("limit: not an integer from 1 to %d", audit.MaxQueryLimit)
			}
			q.Limit = n
		default:
			return audit.Query{}, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	return q, nil
}
