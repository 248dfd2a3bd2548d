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
	// NextCursor continues with older records; "" after the last page.
	// A page may hold fewer than limit records and still have a next
	// one: each request reads at most audit.MaxPageScan records.
	NextCursor string `json:"next_cursor"`
}

// AuditHandler serves GET /admin/audit: the records of au, newest first,
// authenticated exactly as the admin revocation API; it needs the role
// audit. Query parameters:
// sub, trigger, since and until (RFC 3339), limit (1 to 1000, default
// 100), cursor (the next_cursor of the previous page). Each request reads
// a bounded part of the log (audit.Log.Page), never a whole file. A nil
// au is not allowed.
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
		q, before, err := ParseAuditQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		page, err := au.Page(r.Context(), q, before)
		if err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelError, "reading the audit log failed", slog.Any("error", err))
			writeError(w, http.StatusInternalServerError, "server_error", "audit log not read")
			return
		}
		out := auditResponse{Records: page.Records}
		if out.Records == nil {
			out.Records = []audit.Record{}
		}
		if page.Next > 0 {
			out.NextCursor = strconv.FormatUint(page.Next, 10)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// ParseAuditQuery reads the query parameters of GET /admin/audit: the
// audit.Query and the cursor (0: the newest page). Its errors are fit to
// show the caller.
func ParseAuditQuery(rawQuery string) (audit.Query, uint64, error) {
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return audit.Query{}, 0, badRequest("query is not valid")
	}
	var q audit.Query
	var before uint64
	for name, vs := range vals {
		if len(vs) != 1 {
			return audit.Query{}, 0, badRequest("%s: given more than once", truncate(name, 32))
		}
		v := vs[0]
		switch name {
		case "sub":
			if v == "" || len(v) > cache.MaxValueLen {
				return audit.Query{}, 0, badRequest("sub: empty or longer than %d bytes", cache.MaxValueLen)
			}
			q.Sub = v
		case "trigger":
			if !slices.Contains(audit.Triggers, v) {
				return audit.Query{}, 0, badRequest("trigger: not one of %s", strings.Join(audit.Triggers, ", "))
			}
			q.Trigger = v
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return audit.Query{}, 0, badRequest("%s: not an RFC 3339 time", name)
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > audit.MaxQueryLimit {
				return audit.Query{}, 0, badRequest("limit: not an integer from 1 to %d", audit.MaxQueryLimit)
			}
			q.Limit = n
		case "cursor":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return audit.Query{}, 0, badRequest("cursor: not valid")
			}
			before = n
		default:
			return audit.Query{}, 0, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	return q, before, nil
}
