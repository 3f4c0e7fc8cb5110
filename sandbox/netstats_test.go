package sandbox

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseNetDev(t *testing.T) {
	const header = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	for _, tc := range []struct {
		name, table string
		want        []InterfaceStats
		bad         bool
	}{
		{name: "only loopback", table: "    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0\n"},
		{
			name: "pod",
			table: "    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0\n" +
				"  eth0:   12829     105    2    4    0     0          0         0     5374      57    3    6    0     0       0          0\n",
			want: []InterfaceStats{{Name: "eth0", RxBytes: 12829, RxPackets: 105, RxErrors: 2, RxDropped: 4, TxBytes: 5374, TxPackets: 57, TxErrors: 3, TxDropped: 6}},
		},
		{
			name:  "long name and 64-bit counters",
			table: "veryverylongnm:18446744073709551615 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n",
			want:  []InterfaceStats{{Name: "veryverylongnm", RxBytes: 18446744073709551615, RxPackets: 1, TxBytes: 7, TxPackets: 1}},
		},
		{name: "short line", table: "  eth0: 1 2 3\n", bad: true},
		{name: "no colon", table: "  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", bad: true},
		{name: "not a number", table: "  eth0: x 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetDev(strings.NewReader(header + tc.table))
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseNetDev = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
