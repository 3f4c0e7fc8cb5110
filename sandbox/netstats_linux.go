package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
	RxPackets, RxDropped                 uint64
	TxPackets, TxDropped                 uint64
}

// ReadInterfaceStats lists the counters of every interface in the network
// namespace pinned at netnsPath, loopback excluded. It reads
// /proc/thread-self/net/dev from a thread inside that namespace (Do): procfs
// shows the network namespace of the thread that reads it.
func ReadInterfaceStats(ctx context.Context, netnsPath string) ([]InterfaceStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []InterfaceStats
	err := Namespaces{Net: netnsPath}.Do(func() error {
		const path = "/proc/thread-self/net/dev"
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if out, err = parseNetDev(f); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("interface stats of netns %s: %w", netnsPath, err)
	}
	return out, nil
}

// parseNetDev reads the /proc/net/dev table: two header lines, then
// "name: rx_bytes rx_packets rx_errs ... tx_bytes tx_packets tx_errs ...".
// Interface names never contain ':' (the kernel refuses them).
func parseNetDev(r io.Reader) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(r)
	for n := 0; sc.Scan(); n++ {
		if n < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no interface name: %q", n+1, sc.Text())
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("line %d: %d counters, want 16: %q", n+1, len(f), sc.Text())
		}
		var v [16]uint64
		for i := range v {
			var err error
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
		}
		if name == "lo" {
			continue
		}
		out = append(out, InterfaceStats{
			Name:    name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, sc.Err()
}
