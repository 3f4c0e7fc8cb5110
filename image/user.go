package image

import (
	"strconv"
	"strings"
)

// UserFromConfig splits an image config's User ("uid", "name", "uid:gid",
// "name:group") into what CRI reports: a numeric uid, or else a user name.
// The group part is ignored; "" gives neither.
func UserFromConfig(user string) (uid *int64, username string) {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil && n >= 0 {
		return &n, ""
	}
	return nil, u
}
