// Package registry builds Skiff's own test images from Debian's busybox-static
// (every image critest v1.36.0 pulls, under its upstream name) and serves them
// from go-containerregistry's in-memory registry on loopback.
//
// Images live in the local registry under "<upstream-host>/<repository>", so
// a mirror endpoint "http://127.0.0.1:PORT/<upstream-host>" for each upstream
// host makes a runtime that honours mirrors pull "registry.k8s.io/pause:3.9"
// from "127.0.0.1:PORT/registry.k8s.io/pause:3.9". Tests use Start; the
// hack/testimages tool uses Listen to serve the same set to skiffd and critest.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// dockerHub is the registry host critest-style names use for Docker Hub;
// go-containerregistry spells it index.docker.io.
const dockerHub = "docker.io"

// Registry is a running registry holding an image set.
type Registry struct {
	addr  string
	names []string
	close func() error
}

// Start builds the image set and serves it on 127.0.0.1 for the life of the
// test; t.Cleanup shuts it down.
func Start(t testing.TB) *Registry {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options (WithLarge, another busybox).
func StartWith(t testing.TB, opts Options) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	set, err := Images(ctx, opts)
	if err != nil {
		t.Fatalf("build test images: %v", err)
	}
	h, err := handler(ctx, set, nil)
	if err != nil {
		t.Fatalf("load test images: %v", err)
	}
	srv := httptest.NewServer(h)
	r := &Registry{
		addr:  strings.TrimPrefix(srv.URL, "http://"),
		names: Names(set),
		close: func() error { srv.Close(); return nil },
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// Listen builds the image set, then serves it on addr ("127.0.0.1:5000";
// port 0 picks a free one) until Close. Every image is in place before the
// port opens, so a client that can connect can pull. requestLog, if not nil,
// receives one line per request.
func Listen(ctx context.Context, addr string, opts Options, requestLog io.Writer) (*Registry, error) {
	set, err := Images(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("build test images: %w", err)
	}
	h, err := handler(ctx, set, requestLog)
	if err != nil {
		return nil, fmt.Errorf("load test images: %w", err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("test registry: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	return &Registry{
		addr:  l.Addr().String(),
		names: Names(set),
		close: func() error {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := srv.Shutdown(sctx)
			if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			return err
		},
	}, nil
}

// Serve is Listen that blocks until ctx is done, then shuts the registry down.
func Serve(ctx context.Context, addr string, opts Options) error {
	r, err := Listen(ctx, addr, opts, nil)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return r.Close()
}

// Close stops serving. It is safe to call more than once.
func (r *Registry) Close() error {
	if r.close == nil {
		return nil
	}
	c := r.close
	r.close = nil
	return c()
}

// Addr is the registry's "127.0.0.1:port".
func (r *Registry) Addr() string { return r.addr }

// Names lists the upstream names served, sorted.
func (r *Registry) Names() []string { return append([]string(nil), r.names...) }

// Ref maps an upstream reference ("gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
// "busybox") to where the image lives in this registry
// ("127.0.0.1:port/gcr.io/k8s-staging-cri-tools/test-image-latest:latest").
// It panics on a malformed reference, which is a typo in the calling test;
// use LocalPath to handle the error.
func (r *Registry) Ref(upstream string) string {
	p, err := LocalPath(upstream)
	if err != nil {
		panic(err)
	}
	return r.addr + "/" + p
}

// LocalPath is where an upstream reference is stored in any test registry:
// "<upstream-host>/<repository>:<tag>" or "...@<digest>". Docker Hub is
// spelled docker.io and a missing tag is "latest", as runtimes normalise.
func LocalPath(upstream string) (string, error) {
	ref, err := name.ParseReference(upstream)
	if err != nil {
		return "", fmt.Errorf("test registry: reference %q: %w", upstream, err)
	}
	host := ref.Context().RegistryStr()
	if host == name.DefaultRegistry {
		host = dockerHub
	}
	p := host + "/" + ref.Context().RepositoryStr()
	switch v := ref.(type) {
	case name.Tag:
		return p + ":" + v.TagStr(), nil
	case name.Digest:
		return p + "@" + v.DigestStr(), nil
	}
	return "", fmt.Errorf("test registry: reference %q: neither tag nor digest", upstream)
}

// Hosts lists the upstream registry hosts of the served names; see HostsOf.
func (r *Registry) Hosts() []string { return HostsOf(r.names) }

// HostsOf lists the upstream registry hosts of names, sorted, with
// index.docker.io next to docker.io since clients spell Docker Hub both ways.
func HostsOf(names []string) []string {
	seen := map[string]bool{}
	for _, n := range names {
		p, err := LocalPath(n)
		if err != nil {
			continue
		}
		host, _, _ := strings.Cut(p, "/")
		seen[host] = true
		if host == dockerHub {
			seen[name.DefaultRegistry] = true
		}
	}
	hosts := make([]string, 0, len(seen))
	for h := range seen {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

// Mirrors maps each upstream host to this registry's endpoint for it, in
// skiffd's [image.mirrors] form: "http://127.0.0.1:port/<host>".
func (r *Registry) Mirrors() map[string][]string {
	return MirrorsFor(r.addr, r.Hosts())
}

// MirrorsFor is Mirrors for a registry at addr serving the given hosts.
func MirrorsFor(addr string, hosts []string) map[string][]string {
	m := make(map[string][]string, len(hosts))
	for _, h := range hosts {
		target := h
		if h == name.DefaultRegistry {
			target = dockerHub
		}
		m[h] = []string{"http://" + addr + "/" + target}
	}
	return m
}

// MirrorsTOML is the [image] section of a skiffd config that pulls every
// served name from this registry over plain HTTP.
func (r *Registry) MirrorsTOML() string {
	return MirrorsTOML(r.addr, r.Hosts())
}

// MirrorsTOML renders the [image] config section for a registry at addr.
func MirrorsTOML(addr string, hosts []string) string {
	var b strings.Builder
	b.WriteString("[image]\n")
	fmt.Fprintf(&b, "insecure_registries = [%s]\n", strconv.Quote(addr))
	b.WriteString("\n[image.mirrors]\n")
	m := MirrorsFor(addr, hosts)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		quoted := make([]string, len(m[k]))
		for i, ep := range m[k] {
			quoted[i] = strconv.Quote(ep)
		}
		fmt.Fprintf(&b, "%s = [%s]\n", strconv.Quote(k), strings.Join(quoted, ", "))
	}
	return b.String()
}

// ContainerdMirrorsTOML renders the registry section of a containerd 1.6
// CRI plugin config (config version 2) that pulls every served name from a
// registry at addr, for side-by-side runs. containerd appends no "/v2" to
// an endpoint that has a path, so its endpoints carry it; addr itself is
// listed too, so that direct pulls of addr/... use plain HTTP.
func ContainerdMirrorsTOML(addr string, hosts []string) string {
	var b strings.Builder
	m := MirrorsFor(addr, hosts)
	m[addr] = []string{"http://" + addr}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ep := m[k][0]
		if k != addr {
			ep = "http://" + addr + "/v2" + strings.TrimPrefix(ep, "http://"+addr)
		}
		fmt.Fprintf(&b, "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.%s]\n  endpoint = [%s]\n", strconv.Quote(k), strconv.Quote(ep))
	}
	return b.String()
}

// handler returns go-containerregistry's in-memory registry holding set.
// Images are pushed through the handler itself, not over a socket, so the
// registry is complete before anything listens.
func handler(ctx context.Context, set []Image, requestLog io.Writer) (http.Handler, error) {
	if requestLog == nil {
		requestLog = io.Discard
	}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(requestLog, "registry: ", log.LstdFlags)))
	opts := []remote.Option{remote.WithTransport(handlerTransport{h}), remote.WithContext(ctx)}
	for _, im := range set {
		for _, n := range im.Names {
			p, err := LocalPath(n)
			if err != nil {
				return nil, err
			}
			ref, err := name.ParseReference("localhost/"+p, name.Insecure)
			if err != nil {
				return nil, fmt.Errorf("test registry: %s: %w", n, err)
			}
			if im.Index != nil {
				err = remote.WriteIndex(ref, im.Index, opts...)
			} else {
				err = remote.Write(ref, im.Image, opts...)
			}
			if err != nil {
				return nil, fmt.Errorf("test registry: push %s: %w", n, err)
			}
		}
	}
	return h, nil
}

// handlerTransport delivers requests straight to an http.Handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil {
		req.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req // clients resolve relative Location headers against it
	return resp, nil
}
