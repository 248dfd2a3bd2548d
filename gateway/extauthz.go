package gateway

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
)

// maxCheckHeader bounds one header value of a CheckRequest, and the path.
const maxCheckHeader = 64 << 10

// AuthorizationServer returns the Envoy ext_authz gRPC service
// (envoy.service.auth.v3.Authorization/Check) on g's routes, for the
// caller to register on its grpc.Server. Check never returns a gRPC
// error: every answer, refusals included, is a CheckResponse.
func (g *Gateway) AuthorizationServer() authv3.AuthorizationServer {
	return &extAuthz{g: g}
}

type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	g *Gateway
}

var _ authv3.AuthorizationServer = (*extAuthz)(nil)

// Check makes the forward-auth decision for the request Envoy describes:
// its host and path choose the route, its authorization and cookie
// headers are the credentials. OK carries the identity headers to set
// upstream and removes every other configured identity header (a
// client-sent copy); Authorization is left as it is. A refusal carries
// the HTTP status, the RFC 6750 challenge and the JSON body the proxy
// would answer.
func (x *extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	g := x.g
	if p, ok := peer.FromContext(ctx); !ok || p.Addr == nil || !g.trustedSource(p.Addr.String()) {
		g.noRoute.forward(errUntrusted.d)
		return refusedCheck(errUntrusted), nil
	}
	o, h, ferr := describeCheck(req.GetAttributes().GetRequest().GetHttp())
	if ferr != nil {
		g.noRoute.forward(ferr.d)
		return refusedCheck(ferr), nil
	}
	rt, v, ferr := g.decideForward(ctx, o, h)
	if ferr != nil {
		g.noRoute.forward(ferr.d)
		return refusedCheck(ferr), nil
	}
	rt.metrics.forward(v.d)
	if v.d == decAllowed {
		return rt.allowedCheck(v), nil
	}
	g.logDenied(ctx, rt.label, v.d, v.token)
	// The answer the HTTP endpoint would give, as Envoy's denied response.
	var rec recorder
	if v.mode == AuthBrowser {
		rt.noSession(&rec)
	} else {
		rt.denyForward(&rec, v.d)
	}
	return rec.denied(), nil
}

// describeCheck reads the original request and its credentials from an
// ext_authz HTTP attribute context. Header names are lower case there;
// with Envoy's encode_raw_headers they come as header_map, where a
// repeated header is repeated (and so refused like a repeated
// Authorization field).
func describeCheck(hr *authv3.AttributeContext_HttpRequest) (original, http.Header, *forwardError) {
	if hr == nil {
		return original{}, nil, badForward("the check request has no HTTP request")
	}
	h := http.Header{}
	add := func(k, v string) *forwardError {
		if len(v) > maxCheckHeader {
			return badForward("a header of the check request is too long")
		}
		switch strings.ToLower(k) {
		case "authorization":
			h["Authorization"] = append(h["Authorization"], v)
		case "cookie":
			h["Cookie"] = append(h["Cookie"], v)
		}
		return nil
	}
	for k, v := range hr.GetHeaders() {
		if err := add(k, v); err != nil {
			return original{}, nil, err
		}
	}
	for _, hv := range hr.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		if err := add(hv.GetKey(), v); err != nil {
			return original{}, nil, err
		}
	}
	o := original{method: hr.GetMethod(), host: hr.GetHost()}
	switch s := strings.ToLower(hr.GetScheme()); s {
	case "", "http", "https":
		o.scheme = s
	default:
		return original{}, nil, badForward("the scheme is not http or https")
	}
	switch {
	case o.method == "" || !validToken(o.method):
		return original{}, nil, badForward("the check request has no valid method")
	case o.host == "":
		return original{}, nil, badForward("the check request has no host")
	case len(hr.GetPath()) > maxForwardedURI:
		return original{}, nil, badForward("the path is too long")
	}
	if err := setHost(&o.host, o.host); err != nil {
		return original{}, nil, err
	}
	u, ferr := parseOriginPath(hr.GetPath())
	if ferr != nil {
		return original{}, nil, badForward("the path is not a path (want /path?query)")
	}
	o.url = u
	return o, h, nil
}

// allowedCheck is the OK answer: the route's identity headers from the
// verified claims; every other configured identity header is removed.
func (rt *route) allowedCheck(v verdict) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	set := make(map[string]bool, len(rt.headers))
	if v.claims != nil {
		// putIdentity's rules (an unverified email is not an identity).
		id := make(http.Header, len(rt.headers))
		rt.putIdentity(id, v.claims, v.mode == AuthBrowser)
		for _, ih := range rt.headers {
			if vals := id[ih.name]; len(vals) == 1 {
				val := vals[0]
				ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
					Header:       &corev3.HeaderValue{Key: ih.name, Value: val},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				})
				set[foldHeaderName(ih.name)] = true
			}
		}
	}
	for _, f := range rt.strip {
		if !set[f] {
			ok.HeadersToRemove = append(ok.HeadersToRemove, f)
		}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

// refusedCheck is the denied answer for a request that cannot be judged.
func refusedCheck(ferr *forwardError) *authv3.CheckResponse {
	var rec recorder
	plainError(&rec, ferr.status, ferr.reason)
	res := rec.denied()
	res.Status.Message = ferr.reason
	return res
}

// recorder captures what an http.Handler helper writes, to turn it into
// an ext_authz denied response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// denied turns the recorded answer into a denied CheckResponse with the
// gRPC code matching its status.
func (r *recorder) denied() *authv3.CheckResponse {
	code := codes.PermissionDenied
	switch r.status {
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	d := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.status)},
		Body:   r.body.String(),
	}
	keys := make([]string, 0, len(r.header))
	for k := range r.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range r.header[k] {
			d.Headers = append(d.Headers, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: k, Value: v},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
	}
}
