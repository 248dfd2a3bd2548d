package console

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// maxAnswer bounds what the console keeps of an admin API answer.
const maxAnswer = 4 << 20

// answer is an admin API handler's response, captured in process.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.body.Len()+len(b) > maxAnswer {
		return 0, http.ErrContentLength
	}
	return a.body.Write(b)
}

// call serves method target with h in process, as the signed-in token
// would over HTTP: the admin API's roles, validation, audit and logs
// apply unchanged. body, when not nil, is sent as JSON.
func (c *Console) call(q *request, h http.Handler, method, target string, body any) (*answer, error) {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return nil, err
		}
	}
	r, err := http.NewRequestWithContext(q.r.Context(), method, target, &buf)
	if err != nil {
		return nil, err
	}
	r.RemoteAddr = q.r.RemoteAddr
	r.Header.Set("Authorization", "Bearer "+q.token)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	a := &answer{header: http.Header{}}
	h.ServeHTTP(a, r)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a, nil
}

// apiError is the error body of the admin API.
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// message is the text of an error answer, fit for a page.
func (a *answer) message() string {
	var e apiError
	if json.Unmarshal(a.body.Bytes(), &e) != nil || e.Error == "" {
		return http.StatusText(a.status)
	}
	if e.Description != "" {
		return e.Description
	}
	return e.Error
}
