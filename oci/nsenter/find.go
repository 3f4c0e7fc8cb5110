package nsenter

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// Beside finds the stage next to binary, the skiff-shim it is installed
// with; "" or /proc/self/exe mean this process's own executable. A missing
// or non-executable stage is ErrFailedPrecondition (a node set-up error).
func Beside(binary string) (string, error) {
	if binary == "" || binary == "/proc/self/exe" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find %s: %w", Binary, err)
		}
		binary = exe
	}
	p := filepath.Join(filepath.Dir(binary), Binary)
	if err := unix.Access(p, unix.X_OK); err != nil {
		return "", errdefs.FailedPrecondition("%s, installed beside skiff-shim (it joins user namespaces and is the pod init), is missing: %v", p, err)
	}
	return p, nil
}
