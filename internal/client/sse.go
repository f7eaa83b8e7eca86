package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	// ID is the stream's last event ID when the event was dispatched: the
	// event's own id field, or the latest one before it.
	ID   string
	Name string // "message" when the event names none
	Data string // data lines joined with "\n"
}

// Limits that keep a broken or hostile stream from using all memory.
const (
	maxSSELine = 16 << 20
	maxSSEData = 32 << 20
)

// errSSETooLarge reports a line or event over the limits; reconnecting
// would read it again, so it is not retried.
var errSSETooLarge = errors.New("event stream: event too large")

// sseParser reads Server-Sent Events as the WHATWG HTML standard
// ("Interpreting an event stream") describes them: lines end with CRLF,
// LF or CR; a blank line dispatches the event; "data" lines are joined
// with "\n"; lines starting with ":" are comments; an "id" persists until
// the next one; an event without data is not dispatched; an incomplete
// event at the end of the stream is discarded.
type sseParser struct {
	r       *bufio.Reader
	line    []byte
	afterCR bool // the last line ended with CR: skip a following LF
	started bool // the first line was read (a BOM may precede it)

	lastID  string
	name    string
	data    strings.Builder
	hasData bool

	// retry is the reconnection time the stream asked for; 0 = none.
	retry time.Duration
}

func newSSEParser(r io.Reader, lastID string) *sseParser {
	return &sseParser{r: bufio.NewReaderSize(r, 32<<10), lastID: lastID}
}

// readLine returns the next line without its terminator. At the end of the
// stream it returns io.EOF (an unterminated last line is dropped).
func (p *sseParser) readLine() ([]byte, error) {
	p.line = p.line[:0]
	for {
		if p.afterCR {
			// The last line ended with CR: a LF right after it belongs to
			// it. Waiting for this byte never delays an event: the line
			// before it was handled already.
			b, err := p.r.ReadByte()
			if err != nil {
				return nil, err
			}
			p.afterCR = false
			if b != '\n' {
				_ = p.r.UnreadByte()
			}
		}
		if p.r.Buffered() == 0 {
			if _, err := p.r.Peek(1); err != nil {
				return nil, err
			}
		}
		buf, _ := p.r.Peek(p.r.Buffered())
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			i = len(buf)
		}
		if len(p.line)+i > maxSSELine {
			return nil, errSSETooLarge
		}
		p.line = append(p.line, buf[:i]...)
		if i == len(buf) {
			_, _ = p.r.Discard(i)
			continue
		}
		p.afterCR = buf[i] == '\r'
		_, _ = p.r.Discard(i + 1)
		return p.line, nil
	}
}

// Next returns the next event. It returns io.EOF at the end of the
// stream, and the reader's error if reading fails.
func (p *sseParser) Next() (sseEvent, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if !p.started {
			p.started = true
			line = trimBOM(line)
		}
		if len(line) == 0 {
			if ev, ok := p.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment: keepalive
		}
		field, value := string(line), ""
		if i := strings.IndexByte(field, ':'); i >= 0 {
			field, value = field[:i], field[i+1:]
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			p.name = value
		case "data":
			if p.data.Len()+len(value)+1 > maxSSEData {
				return sseEvent{}, errSSETooLarge
			}
			if p.hasData {
				p.data.WriteByte('\n')
			}
			p.data.WriteString(value)
			p.hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastID = value
			}
		case "retry":
			if ms, ok := digits(value); ok {
				p.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// dispatch ends the event being read.
func (p *sseParser) dispatch() (sseEvent, bool) {
	defer func() {
		p.name = ""
		p.data.Reset()
		p.hasData = false
	}()
	if !p.hasData {
		return sseEvent{}, false
	}
	name := p.name
	if name == "" {
		name = "message"
	}
	return sseEvent{ID: p.lastID, Name: name, Data: p.data.String()}, true
}

func trimBOM(line []byte) []byte {
	if len(line) >= 3 && line[0] == 0xEF && line[1] == 0xBB && line[2] == 0xBF {
		return line[3:]
	}
	return line
}

// digits parses a retry value: ASCII digits only, bounded to an hour.
func digits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > int64(time.Hour/time.Millisecond) {
			n = int64(time.Hour / time.Millisecond)
		}
	}
	return n, true
}
