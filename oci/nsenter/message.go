package nsenter

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ParsePid reads the stage's message b: the host pid of the init it
// forked, or the error it reports. Empty b means the stage exited without
// a word (it closed its end).
func ParsePid(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("the init exited while joining its user namespace")
	}
	var m struct {
		Type  string `json:"type"`
		Error string `json:"error"`
		Pid   int    `json:"pid"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("bad message %q from %s: %w", b, Binary, err)
	}
	switch {
	case m.Type == MsgError:
		return 0, errors.New(m.Error)
	case m.Type == MsgPid && m.Pid > 0:
		return m.Pid, nil
	}
	return 0, fmt.Errorf("unexpected message %q from %s", b, Binary)
}
