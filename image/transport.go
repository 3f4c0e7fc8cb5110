package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/skiffcri/skiff/errdefs"
)

// newTransports builds the HTTP transports for verified and unverified TLS;
// both abort a request that makes no progress for stall.
func newTransports(stall time.Duration) (secure, insecure http.RoundTripper) {
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   50,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	s := base()
	in := base()
	in.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for configured insecure registries
	return &stallTransport{base: s, timeout: stall}, &stallTransport{base: in, timeout: stall}
}

// errStalled is the cause of a request cancelled for making no progress.
var errStalled = errors.New("download stalled")

// stallTransport cancels a request when neither its response headers nor any
// byte of its body arrive for timeout. A slow but moving download is fine;
// only a silent connection is cut, so the kubelet can retry elsewhere.
type stallTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errStalled) })
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		stalled := errors.Is(context.Cause(ctx), errStalled)
		cancel(nil)
		if stalled {
			return nil, t.stallError(req)
		}
		return nil, err
	}
	timer.Reset(t.timeout)
	resp.Body = &stallBody{rc: resp.Body, t: t, req: req, ctx: ctx, cancel: cancel, timer: timer}
	return resp, nil
}

func (t *stallTransport) stallError(req *http.Request) error {
	return fmt.Errorf("GET %s: no progress for %s: %w: %w", req.URL.Redacted(), t.timeout, errStalled, errdefs.ErrUnavailable)
}

type stallBody struct {
	rc     io.ReadCloser
	t      *stallTransport
	req    *http.Request
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	once   sync.Once
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.t.timeout)
	}
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), errStalled) {
		return n, b.t.stallError(b.req)
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.once.Do(func() {
		b.timer.Stop()
		b.cancel(nil)
	})
	return b.rc.Close()
}
