package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/oidcgate/oidcgate/introspect"
)

// UserIDs records the user id at an issuer's session authority of a
// subject the gateway verified (issue 12: Entra names users by oid, its
// sub is pairwise). *cache.Store and *cache.Redis implement it.
type UserIDs interface {
	RecordUserID(ctx context.Context, issuer, sub, id string, until time.Time) error
}

// DefaultUserIDRetention is how long a learned user id is kept after the
// subject was last seen when Config.UserIDRetention is 0: 90 days, the
// longest an Entra refresh token lives unused, so that a subject revoked
// while it may still hold one can be ended at the authority.
const DefaultUserIDRetention = 90 * 24 * time.Hour

// learnUserID records the user id that c (a verified token's or ID
// token's claims) carries for its issuer's session authority, when that
// issuer names users by another claim than sub. A token without the claim
// teaches nothing. A store error is logged, never fails the request: the
// revocation target then says the user id is not known.
func (g *Gateway) learnUserID(ctx context.Context, c *introspect.Claims) {
	if g.userIDs == nil || c == nil || c.Subject == "" {
		return
	}
	claim, ok := g.userIDClaims[c.Issuer]
	if !ok {
		return
	}
	id, ok := c.Claim(claim)
	if !ok {
		return
	}
	if err := g.userIDs.RecordUserID(ctx, c.Issuer, c.Subject, id, g.now().Add(g.userIDRetention)); err != nil {
		g.log.LogAttrs(ctx, slog.LevelWarn, "user id at the session authority not recorded", slog.String("issuer", c.Issuer), slog.String("claim", claim), slog.String("error", err.Error()))
	}
}
