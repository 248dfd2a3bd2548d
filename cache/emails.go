package cache

// EmailOwner is a user whose verified email address the gateway saw at a
// login: the issuer and the user's sub there.
type EmailOwner struct {
	Issuer string `json:"issuer"`
	Sub    string `json:"sub"`
}
