// Package crilog writes container output in the CRI log format that the
// kubelet reads back for `kubectl logs`:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n
//
// A line longer than the maximum line size is split into chunks tagged P
// (partial) with the last chunk tagged F (full). Output that ends without a
// newline when the stream closes is written tagged P, as containerd does, so
// a reader never invents a line break the container did not print. A
// trailing "\r\n" counts as the line end (terminal output).
//
// Both streams of one container share one Writer; every record is written
// with a single write(2) on an O_APPEND file so records never interleave
// inside a line.
package crilog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Stream names a container output stream as it appears in a log record.
type Stream string

// The two streams a container writes.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// DefaultMaxLineSize is the longest text carried by one record; longer lines
// are split. 16 KiB is the kubelet's and containerd's default.
const DefaultMaxLineSize = 16 * 1024

// readBufferSize is how much of a stream Copy reads at once.
const readBufferSize = 4096

// Tags of a record: P continues in the next record of the same stream, F ends
// the line.
const (
	TagPartial = 'P'
	TagFull    = 'F'
)

// Options tune a Writer. The zero value is ready to use.
type Options struct {
	// MaxLineSize caps the text of one record; 0 means DefaultMaxLineSize.
	MaxLineSize int
	// Now returns the timestamp of a record; nil means time.Now. Tests set
	// it to get stable output.
	Now func() time.Time
}

// Writer appends CRI log records to one file. It is safe for concurrent use
// by the copiers of both streams and by Reopen.
type Writer struct {
	path    string
	maxLine int
	now     func() time.Time

	mu   sync.Mutex
	file *os.File
	buf  []byte
	// werr remembers the first write error since the last (re)open so a
	// full disk is reported once instead of once per line.
	werr error
}

// Open opens (creating if needed) the log file at path for appending. The
// directory must already exist: the kubelet creates it, and creating it here
// would hide a wrong path.
func Open(path string, o Options) (*Writer, error) {
	w := &Writer{path: path, maxLine: o.MaxLineSize, now: o.Now}
	if w.maxLine <= 0 {
		w.maxLine = DefaultMaxLineSize
	}
	if w.now == nil {
		w.now = time.Now
	}
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	w.file = f
	return w, nil
}

func openLog(path string) (*os.File, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, &os.PathError{Op: "open log", Path: path, Err: errors.New("path must be absolute")}
	}
	// O_APPEND: the kubelet and log rotators may truncate or copy the file
	// underneath; appending keeps every write at the current end.
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Path returns the file the Writer appends to.
func (w *Writer) Path() string { return w.path }

// Reopen closes the current file and opens the path again, so that after the
// kubelet renamed the file for rotation new records go to a new file. If the
// new file cannot be opened the old one stays in use and the error is
// returned.
func (w *Writer) Reopen() error {
	f, err := openLog(w.path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old := w.file
	w.file = f
	w.werr = nil
	w.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file. Records written afterwards are dropped with an
// error.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	return err
}

// WriteRecord appends one record. text must not contain a newline; callers
// normally use Copy, which guarantees that.
func (w *Writer) WriteRecord(stream Stream, tag byte, text []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		return &os.PathError{Op: "write", Path: w.path, Err: os.ErrClosed}
	}
	b := w.buf[:0]
	b = w.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ', tag, ' ')
	b = append(b, text...)
	b = append(b, '\n')
	_, err := w.file.Write(b)
	if cap(b) <= 2*(w.maxLine+64) {
		w.buf = b
	}
	if err != nil && w.werr == nil {
		w.werr = err
		return err
	}
	return nil
}

// Copy reads r until EOF or a read error and writes its lines as records of
// stream. It keeps reading after write errors so that the container never
// blocks on a full pipe; the first write error is returned at the end. A
// read error other than EOF (for example EIO from a pty master once the
// terminal's last user exits) ends the copy without being reported, since it
// is how such streams end.
func (w *Writer) Copy(stream Stream, r io.Reader) error {
	return copyLines(r, w.maxLine, readBufferSize, func(tag byte, text []byte) error {
		return w.WriteRecord(stream, tag, text)
	})
}

// copyLines splits r into records of at most maxLine bytes of text and hands
// each to emit, reading at most readSize bytes at a time (bufio's minimum
// is 16). The first emit error is returned after r is drained.
func copyLines(r io.Reader, maxLine, readSize int, emit func(tag byte, text []byte) error) error {
	var firstErr error
	out := func(tag byte, text []byte) {
		if err := emit(tag, text); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	// Lines are gathered in pending, so the read buffer need not hold a
	// whole one: every container has one per stream, mostly idle.
	br := bufio.NewReaderSize(r, min(maxLine+1, readSize))
	// pending holds the tail of a line whose head has not been written
	// yet: at most maxLine bytes between reads.
	var pending []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			pending = append(pending, chunk...)
		}
		switch {
		case err == nil:
			// pending ends with '\n': a complete line.
			line := pending[:len(pending)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			for len(line) > maxLine {
				out(TagPartial, line[:maxLine])
				line = line[maxLine:]
			}
			out(TagFull, line)
			pending = pending[:0]
		case errors.Is(err, bufio.ErrBufferFull):
			// No newline within the buffer: flush whole chunks, keep the
			// rest. A '\r' at the end is held back in case its '\n' follows.
			for len(pending) > maxLine && !(len(pending) == maxLine+1 && pending[maxLine] == '\r') {
				out(TagPartial, pending[:maxLine])
				pending = append(pending[:0], pending[maxLine:]...)
			}
		default:
			// EOF or a read error: whatever is left never got its newline.
			for len(pending) > maxLine {
				out(TagPartial, pending[:maxLine])
				pending = pending[maxLine:]
			}
			if len(pending) > 0 {
				out(TagPartial, pending)
			}
			return firstErr
		}
	}
}

// Record is one parsed log line, for readers and tests.
type Record struct {
	Time   time.Time
	Stream Stream
	Tag    byte
	Text   []byte
}

// ParseRecord parses one log line without its trailing newline.
func ParseRecord(line []byte) (Record, error) {
	var rec Record
	sp := indexByte(line, ' ')
	if sp < 0 {
		return rec, fmt.Errorf("crilog: no timestamp in %q", trim(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return rec, fmt.Errorf("crilog: bad timestamp in %q: %w", trim(line), err)
	}
	rest := line[sp+1:]
	sp = indexByte(rest, ' ')
	if sp < 0 {
		return rec, fmt.Errorf("crilog: no stream in %q", trim(line))
	}
	s := Stream(rest[:sp])
	if s != Stdout && s != Stderr {
		return rec, fmt.Errorf("crilog: bad stream %q", s)
	}
	rest = rest[sp+1:]
	if len(rest) < 2 || (rest[0] != TagPartial && rest[0] != TagFull) || rest[1] != ' ' {
		return rec, fmt.Errorf("crilog: bad tag in %q", trim(line))
	}
	return Record{Time: t, Stream: s, Tag: rest[0], Text: rest[2:]}, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
