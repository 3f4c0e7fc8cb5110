package image

import (
	"encoding/base64"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/skiffcri/skiff/errdefs"
)

// authenticator turns the kubelet's credential into one go-containerregistry
// uses for host. A credential whose ServerAddress names another host is not
// sent to host (so upstream credentials do not leak to an unrelated mirror),
// except to the upstream registry itself, which the kubelet picked it for.
// Bearer-token exchange (basic or identity token -> registry token) is done by
// go-containerregistry's transport.
func (a *Auth) authenticator(host string, upstream bool) (authn.Authenticator, error) {
	if a == nil || *a == (Auth{}) {
		return authn.Anonymous, nil
	}
	if a.ServerAddress != "" && !upstream && normalizeHost(a.ServerAddress) != normalizeHost(host) {
		return authn.Anonymous, nil
	}
	cfg := authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth != "" && cfg.Username == "" && cfg.Password == "" {
		user, pass, err := decodeAuth(a.Auth)
		if err != nil {
			return nil, err
		}
		cfg.Username, cfg.Password = user, pass
	}
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// decodeAuth splits the docker config "auth" field, base64("user:pass").
func decodeAuth(s string) (user, pass string, err error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(strings.TrimSpace(s))
	}
	if err != nil {
		return "", "", errdefs.InvalidArgument("registry auth: auth field is not base64: %v", err)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errdefs.InvalidArgument("registry auth: auth field is not \"user:password\"")
	}
	return user, pass, nil
}
