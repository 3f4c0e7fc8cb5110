package image

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/skiffcri/skiff/errdefs"
)

// dockerHub is how kubelet and containerd spell Docker Hub in RepoTags;
// go-containerregistry uses name.DefaultRegistry ("index.docker.io") instead.
const dockerHub = "docker.io"

// parseRef parses an image reference the way the kubelet means it: a missing
// registry is Docker Hub, a missing tag is "latest", and a reference with both
// a tag and a digest is a digest reference.
func parseRef(s string) (name.Reference, error) {
	if s == "" {
		return nil, errdefs.InvalidArgument("empty image reference")
	}
	if strings.HasPrefix(s, "sha256:") {
		return nil, errdefs.InvalidArgument("image reference %q is an image ID, not a name", s)
	}
	r, err := name.ParseReference(s)
	if err != nil {
		return nil, errdefs.InvalidArgument("image reference %q: %v", s, err)
	}
	return r, nil
}

// normalizedRepo is the repository as the kubelet expects it in RepoTags:
// "docker.io/library/busybox", "registry.k8s.io/pause".
func normalizedRepo(r name.Repository) string {
	return normalizeHost(r.RegistryStr()) + "/" + r.RepositoryStr()
}

// refString is the normalized form of r: "repo:tag" or "repo@sha256:...".
func refString(r name.Reference) string {
	switch r := r.(type) {
	case name.Digest:
		return normalizedRepo(r.Context()) + "@" + r.DigestStr()
	case name.Tag:
		return normalizedRepo(r.Context()) + ":" + r.TagStr()
	}
	return r.Name()
}

// NamesFor returns the tag and digest the image is known by, as one of
// refs (the references a pod asked for, in order of preference) names it:
// an image pulled under several names (one content, many tags) is shown
// under the one the pod used. Without a match it is the first of each
// (RepoTags[0], RepoDigests[0]); either is "" when the image has none.
func (img Image) NamesFor(refs ...string) (tag, digest string) {
	if len(img.RepoTags) > 0 {
		tag = img.RepoTags[0]
	}
	if len(img.RepoDigests) > 0 {
		digest = img.RepoDigests[0]
	}
	for _, ref := range refs {
		r, err := parseRef(ref)
		if err != nil {
			continue
		}
		repo := normalizedRepo(r.Context())
		matched := false
		if t, ok := r.(name.Tag); ok && slices.Contains(img.RepoTags, refString(t)) {
			tag, matched = refString(t), true
		}
		if d, ok := r.(name.Digest); ok && slices.Contains(img.RepoDigests, refString(d)) {
			digest, matched = refString(d), true
			// The tag of the same repository, if any.
			for _, t := range img.RepoTags {
				if strings.HasPrefix(t, repo+":") {
					tag = t
					break
				}
			}
		}
		if !matched {
			continue
		}
		for _, d := range img.RepoDigests {
			if strings.HasPrefix(d, repo+"@") {
				digest = d
				break
			}
		}
		return tag, digest
	}
	return tag, digest
}

// refKey is the key a reference has in the refs bucket.
func refKey(s string) (string, error) {
	r, err := parseRef(s)
	if err != nil {
		return "", err
	}
	return refString(r), nil
}

// normalizeHost maps the aliases of Docker Hub to "docker.io" and lowercases
// the host so config keys, auth server addresses and refs compare equal.
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case name.DefaultRegistry, "registry-1.docker.io", "docker.io":
		return dockerHub
	}
	return h
}

// endpointSpec is one parsed mirror endpoint.
type endpointSpec struct {
	host   string // host[:port]
	prefix string // repository path prefix, without slashes at either end
	plain  bool   // http:// scheme
}

func (e endpointSpec) String() string {
	scheme := "https"
	if e.plain {
		scheme = "http"
	}
	s := scheme + "://" + e.host
	if e.prefix != "" {
		s += "/" + e.prefix
	}
	return s
}

// parseMirrors validates the configured mirror endpoints.
func parseMirrors(m map[string][]string) (map[string][]endpointSpec, error) {
	out := map[string][]endpointSpec{}
	for _, up := range slices.Sorted(maps.Keys(m)) { // sorted: aliases merge in a fixed order
		eps := m[up]
		key := normalizeHost(up)
		for _, ep := range eps {
			u, err := url.Parse(ep)
			if err != nil {
				return nil, errdefs.InvalidArgument("mirror %q for %s: %v", ep, up, err)
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil, errdefs.InvalidArgument("mirror %q for %s: scheme must be http or https", ep, up)
			}
			if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return nil, errdefs.InvalidArgument("mirror %q for %s: want scheme://host[:port][/path-prefix]", ep, up)
			}
			prefix := strings.Trim(u.Path, "/")
			if prefix != "" {
				if _, err := name.NewRepository(u.Host + "/" + prefix + "/x"); err != nil {
					return nil, errdefs.InvalidArgument("mirror %q for %s: bad path prefix: %v", ep, up, err)
				}
			}
			e := endpointSpec{host: u.Host, prefix: prefix, plain: u.Scheme == "http"}
			if !slices.Contains(out[key], e) { // "docker.io" and "index.docker.io" often list the same mirror
				out[key] = append(out[key], e)
			}
		}
	}
	return out, nil
}

// endpoint is one place an image can be pulled from.
type endpoint struct {
	ref      name.Reference // the reference at this endpoint
	host     string
	insecure bool // unverified TLS allowed
	mirror   bool
	desc     string
}

// endpoints lists where r can be pulled from, in order: each mirror of its
// registry, then the registry itself (for an insecure registry: https without
// verification, then plain http).
func (s *Store) endpoints(r name.Reference) ([]endpoint, error) {
	up := normalizeHost(r.Context().RegistryStr())
	var out []endpoint
	for _, m := range s.mirrors[up] {
		repo := r.Context().RepositoryStr()
		if m.prefix != "" {
			repo = m.prefix + "/" + repo
		}
		var opts []name.Option
		if m.plain {
			opts = append(opts, name.Insecure)
		}
		ref, err := rebase(r, m.host+"/"+repo, opts...)
		if err != nil {
			return nil, errdefs.InvalidArgument("image %q at mirror %s: %v", refString(r), m, err)
		}
		out = append(out, endpoint{ref: ref, host: normalizeHost(m.host), insecure: s.insecure[normalizeHost(m.host)], mirror: true, desc: "mirror " + m.String()})
	}
	out = append(out, endpoint{ref: r, host: up, insecure: s.insecure[up], desc: "registry " + up})
	if s.insecure[up] {
		ref, err := rebase(r, r.Context().Name(), name.Insecure)
		if err != nil {
			return nil, errdefs.InvalidArgument("image %q: %v", refString(r), err)
		}
		out = append(out, endpoint{ref: ref, host: up, insecure: true, desc: "registry " + up + " (plain http)"})
	}
	return out, nil
}

// rebase returns r's tag or digest in repository repo.
func rebase(r name.Reference, repo string, opts ...name.Option) (name.Reference, error) {
	rp, err := name.NewRepository(repo, opts...)
	if err != nil {
		return nil, err
	}
	switch r := r.(type) {
	case name.Digest:
		return rp.Digest(r.DigestStr()), nil
	case name.Tag:
		return rp.Tag(r.TagStr()), nil
	}
	return nil, fmt.Errorf("unknown reference type %T", r)
}
