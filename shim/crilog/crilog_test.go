package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixed = time.Date(2026, 11, 24, 18, 0, 0, 123456789, time.UTC)

func fixedNow() time.Time { return fixed }

func rec(s Stream, tag byte, text string) string {
	return fixed.Format(time.RFC3339Nano) + " " + string(s) + " " + string(tag) + " " + text + "\n"
}

func openTemp(t *testing.T, o Options) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.log")
	if o.Now == nil {
		o.Now = fixedNow
	}
	w, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// oneByteReader returns its input one byte per Read, the worst case for
// line assembly.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestCopy(t *testing.T) {
	long := strings.Repeat("a", 10)
	long40 := strings.Repeat("0123456789", 4)
	tests := []struct {
		name    string
		maxLine int
		in      string
		want    []string // tag+text per record
	}{
		{"empty", 4, "", nil},
		{"one line", 16, "hello\n", []string{"Fhello"}},
		{"two lines", 16, "a\nb\n", []string{"Fa", "Fb"}},
		{"empty line", 16, "\n\n", []string{"F", "F"}},
		{"crlf stripped", 16, "tty\r\n", []string{"Ftty"}},
		{"lone cr kept", 16, "a\rb\n", []string{"Fa\rb"}},
		{"partial at eof", 16, "no newline", []string{"Pno newline"}},
		{"exactly max", 10, long + "\n", []string{"F" + long}},
		{"exactly max crlf", 10, long + "\r\n", []string{"F" + long}},
		{"max plus one", 10, long + "b\n", []string{"P" + long, "Fb"}},
		{"twice max", 10, long + long + "\n", []string{"P" + long, "F" + long}},
		{"long then short", 10, long + long + "xy\nz\n", []string{"P" + long, "P" + long, "Fxy", "Fz"}},
		{"long partial at eof", 10, long + "xyz", []string{"P" + long, "Pxyz"}},
		{"max exactly at eof", 10, long, []string{"P" + long}},
		// Lines longer than the read buffer (16 bytes below).
		{"line of three reads", 40, long40[:37] + "\n", []string{"F" + long40[:37]}},
		{"exactly max, many reads", 40, long40 + "\n", []string{"F" + long40}},
		{"exactly max crlf, many reads", 40, long40 + "\r\n", []string{"F" + long40}},
		{"cr at a read's end", 40, long40[:15] + "\r\nb\n", []string{"F" + long40[:15], "Fb"}},
		{"max plus one, many reads", 40, long40 + "b\n", []string{"P" + long40, "Fb"}},
		{"three times max", 40, long40 + long40 + long40 + "xy\nz", []string{"P" + long40, "P" + long40, "P" + long40, "Fxy", "Pz"}},
	}
	for _, tc := range tests {
		for _, slow := range []bool{false, true} {
			name := tc.name
			if slow {
				name += "/bytewise"
			}
			readSize := tc.maxLine + 1
			if tc.maxLine > 16 {
				readSize = 16
			}
			t.Run(name, func(t *testing.T) {
				var got []string
				var r io.Reader = strings.NewReader(tc.in)
				if slow {
					r = oneByteReader{r}
				}
				err := copyLines(r, tc.maxLine, readSize, func(tag byte, text []byte) error {
					got = append(got, string(tag)+string(text))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("records\n got %q\nwant %q", got, tc.want)
				}
			})
		}
	}
}

func TestWriterFormat(t *testing.T) {
	w, path := openTemp(t, Options{MaxLineSize: 4})
	if err := w.Copy(Stdout, strings.NewReader("abcdef\nxy")); err != nil {
		t.Fatal(err)
	}
	if err := w.Copy(Stderr, strings.NewReader("oops\n")); err != nil {
		t.Fatal(err)
	}
	want := rec(Stdout, 'P', "abcd") + rec(Stdout, 'F', "ef") + rec(Stdout, 'P', "xy") + rec(Stderr, 'F', "oops")
	if got := readFile(t, path); got != want {
		t.Errorf("file\n got %q\nwant %q", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("mode %v, want at most 0640", perm)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, path string }{
		{"missing dir", filepath.Join(dir, "nope", "c.log")},
		{"relative", "c.log"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.path, Options{}); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestInterleavedStreams(t *testing.T) {
	w, path := openTemp(t, Options{Now: time.Now})
	const n = 2000
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := w.Copy(s, pr); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			defer pw.Close()
			for i := range n {
				// Write lines in pieces to force reassembly.
				line := string(s) + " line " + strings.Repeat("x", i%50) + "\n"
				pw.Write([]byte(line[:len(line)/2]))
				pw.Write([]byte(line[len(line)/2:]))
			}
		}()
	}
	wg.Wait()
	counts := map[Stream]int{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		r, err := ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want := string(r.Stream) + " line " + strings.Repeat("x", counts[r.Stream]%50)
		if r.Tag != TagFull || string(r.Text) != want {
			t.Fatalf("record %d of %s: %c %q, want F %q", counts[r.Stream], r.Stream, r.Tag, r.Text, want)
		}
		counts[r.Stream]++
	}
	if counts[Stdout] != n || counts[Stderr] != n {
		t.Errorf("counts %v, want %d each", counts, n)
	}
}

func TestReopen(t *testing.T) {
	w, path := openTemp(t, Options{})
	pr, pw := io.Pipe()
	done := make(chan error)
	go func() { done <- w.Copy(Stdout, pr) }()
	io.WriteString(pw, "before\n")
	// The pipe is synchronous: once the next write returns, "before" was
	// read; give Copy a line it must finish before we rotate.
	rotated := path + ".1"
	waitFor(t, func() bool { return strings.Contains(readFileQuiet(path), "before") })
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "after\n")
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, rotated), rec(Stdout, 'F', "before"); got != want {
		t.Errorf("rotated file %q, want %q", got, want)
	}
	if got, want := readFile(t, path), rec(Stdout, 'F', "after"); got != want {
		t.Errorf("new file %q, want %q", got, want)
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "c.log")
	w, err := Open(path, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(sub, moved); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen succeeded with the directory gone")
	}
	if err := w.WriteRecord(Stdout, TagFull, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, filepath.Join(moved, "c.log")), rec(Stdout, 'F', "still"); got != want {
		t.Errorf("old file %q, want %q", got, want)
	}
}

func TestWriteAfterClose(t *testing.T) {
	w, _ := openTemp(t, Options{})
	w.Close()
	err := w.WriteRecord(Stdout, TagFull, []byte("x"))
	if !errors.Is(err, os.ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"2026-11-24T18:00:00.123456789Z stdout F hi", true},
		{"2026-11-24T18:00:00Z stderr P ", true},
		{"2026-11-24T18:00:00Z stdin F hi", false},
		{"2026-11-24T18:00:00Z stdout X hi", false},
		{"2026-11-24T18:00:00Z stdout F", false},
		{"yesterday stdout F hi", false},
		{"", false},
	} {
		_, err := ParseRecord([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("ParseRecord(%q) err %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

// FuzzCopy checks that any input survives the trip: records parse, carry at
// most the maximum text, and joining them back gives the input minus the
// line terminators.
func FuzzCopy(f *testing.F) {
	f.Add([]byte("a\nb\r\nccccccccccccccccccccc\n"), uint8(4))
	f.Add([]byte("no newline"), uint8(3))
	f.Add([]byte("\r\r\n\n"), uint8(1))
	f.Add([]byte(strings.Repeat("x", 15)+"\r\n"+strings.Repeat("y", 70)+"\n"), uint8(60))
	f.Fuzz(func(t *testing.T, in []byte, max uint8) {
		// Up to 64: beyond the 16-byte read buffer it is given.
		maxLine := int(max%64) + 1
		var out bytes.Buffer
		w := &Writer{path: "fuzz", maxLine: maxLine, now: fixedNow}
		err := copyLines(bytes.NewReader(in), maxLine, 16, func(tag byte, text []byte) error {
			if len(text) > maxLine {
				t.Fatalf("record of %d bytes, max %d", len(text), maxLine)
			}
			if bytes.IndexByte(text, '\n') >= 0 {
				t.Fatalf("newline inside record %q", text)
			}
			line := formatForTest(w, tag, text)
			r, err := ParseRecord(line[:len(line)-1])
			if err != nil {
				t.Fatal(err)
			}
			out.Write(r.Text)
			if r.Tag == TagFull {
				out.WriteByte('\n')
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("round trip\n got %q\nwant %q", out.Bytes(), want)
		}
	})
}

func formatForTest(w *Writer, tag byte, text []byte) []byte {
	b := w.now().AppendFormat(nil, time.RFC3339Nano)
	b = append(b, " stdout "...)
	b = append(b, tag, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

func readFileQuiet(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
