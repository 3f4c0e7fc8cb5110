package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/atomicfile"
)

const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
	// resultFifoName is the start result FIFO (see envResultFD).
	resultFifoName = "start.fifo"
)

// validID keeps container ids usable as a single path element:
// [A-Za-z0-9][A-Za-z0-9_.+-]{0,127}. (No regexp: its compilation would run
// at every container init's start-up.)
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// State is the OCI state of a container plus what the executor needs to
// manage it from another process.
type State struct {
	specs.State
	// Created is when Create finished.
	Created time.Time `json:"created"`
	// InitStartTime is field 22 of /proc/<pid>/stat of the init process;
	// together with Pid it identifies the process despite pid reuse.
	InitStartTime uint64 `json:"initStartTime"`
	// Rootfs is the rootfs path given to Create (mounted by the caller).
	Rootfs string `json:"rootfs"`
	// CgroupsPath is spec.Linux.CgroupsPath, used to reopen the cgroup.
	CgroupsPath string `json:"cgroupsPath,omitempty"`
	// SharedPidNS is true when the container joined an existing PID
	// namespace: killing its init does not kill the other processes.
	SharedPidNS bool `json:"sharedPidNS,omitempty"`
	// Hooks is true when the spec (kept in config.json) has OCI hooks, so
	// Start and Delete know to read it.
	Hooks bool `json:"hooks,omitempty"`
	// StartResult is true when Start must wait for the init's result
	// (startContainer or poststart hooks).
	StartResult bool `json:"startResult,omitempty"`
}

// writeState writes st atomically to dir/state.json.
func writeState(dir string, st *State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of %q: %w", st.ID, err)
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), b, 0o644)
}

// readState loads dir/state.json.
func readState(dir, id string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("container %q", id)
		}
		return nil, fmt.Errorf("read state of container %q: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode state of container %q: %w", id, err)
	}
	return &st, nil
}

// procStartTime returns field 22 (starttime) and field 3 (state) of
// /proc/<pid>/stat.
func procStartTime(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat extracts state and starttime from a /proc/<pid>/stat line. The
// comm field may contain spaces and parentheses, so parsing starts after
// the last ')'.
func parseStat(b []byte) (uint64, byte, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, fmt.Errorf("malformed stat line %q", b)
	}
	fields := bytes.Fields(b[i+2:])
	// fields[0] is field 3 (state); starttime is field 22 → index 19.
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed stat line %q", b)
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed starttime in stat line: %w", err)
	}
	return st, fields[0][0], nil
}

// initAlive reports whether the process recorded in st still runs (a zombie
// counts as exited).
func initAlive(st *State) bool {
	if st.Pid <= 0 {
		return false
	}
	start, state, err := procStartTime(st.Pid)
	if err != nil {
		return false
	}
	return start == st.InitStartTime && state != 'Z' && state != 'X'
}
