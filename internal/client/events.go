package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/runs"
)

// EventEnd names the last event of a run's stream: its data is the final
// runs.Detail, and the server closes the stream after it.
const EventEnd = "end"

// Event is one event of a run's stream (GET /v1/runs/{id}/events).
type Event struct {
	// ID is the event's id; the stream resumes after it on reconnect.
	ID string `json:"id,omitempty"`
	// Name is an audit action such as "step.started", or EventEnd.
	Name string `json:"event"`
	// Data is the event's JSON: a domain.AuditEvent, or for EventEnd the
	// final runs.Detail.
	Data json.RawMessage `json:"data"`
}

// Audit decodes the data of an audit event.
func (e Event) Audit() (domain.AuditEvent, error) {
	var ev domain.AuditEvent
	if err := json.Unmarshal(e.Data, &ev); err != nil {
		return ev, fmt.Errorf("event %s %q: %w", e.ID, e.Name, err)
	}
	return ev, nil
}

// Final decodes the data of the EventEnd event: the run as it ended.
func (e Event) Final() (runs.Detail, error) {
	var d runs.Detail
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return d, fmt.Errorf("event %s %q: %w", e.ID, e.Name, err)
	}
	return d, nil
}

// backoff bounds reconnecting a dropped event stream.
type backoff struct {
	initial, max time.Duration
	// attempts is how many reconnects in a row may fail before Events
	// gives up; a reconnect that delivers an event starts a new count.
	attempts int
	// idle is how long a stream may be silent (no event, no keepalive
	// comment) before it counts as dropped.
	idle time.Duration
}

// defaultBackoff rides out a server restart: about 40s of retries.
var defaultBackoff = backoff{initial: 500 * time.Millisecond, max: 5 * time.Second, attempts: 10, idle: 2 * time.Minute}

// errStreamEnded is a stream that closed before its end event.
var errStreamEnded = errors.New("the event stream closed before the run ended")

// errNotStream is a 200 answer that is not an event stream (a proxy's
// page, say); asking again would get the same.
var errNotStream = errors.New("want an event stream")

// errIdle is a stream silent for longer than backoff.idle.
var errIdle = errors.New("the event stream went silent")

// callbackError carries fn's error out of Events unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// Events follows a run's events, calling fn for each in order, ending with
// the EventEnd event; it returns nil after fn handled that one. Events
// seen before (the server replays a run's history first) come too.
//
// A stream that drops is resumed with the Last-Event-ID header, retrying
// with backoff, so following a run survives a server restart. Errors that
// a retry cannot fix (4xx answers, a first connection that fails) return
// at once. An error from fn stops the stream and is returned as is.
func (c *Client) Events(ctx context.Context, workflowID string, fn func(Event) error) error {
	var (
		lastID    string
		connected bool // once: later failures are retried
		failures  int
		base      = c.reconnect.initial
		delay     = base
	)
	for {
		progressed, retry, err := c.stream(ctx, workflowID, &lastID, &connected, fn)
		if err == nil {
			return nil
		}
		if ce, ok := errors.AsType[callbackError](err); ok {
			return ce.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !connected || !retryable(err) {
			return err
		}
		if retry > 0 {
			base = min(retry, c.reconnect.max) // the server's "retry:" field
		}
		if progressed {
			failures, delay = 0, base
		}
		failures++
		if failures > c.reconnect.attempts {
			return fmt.Errorf("gave up after %d reconnects: %w", c.reconnect.attempts, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, c.reconnect.max)
	}
}

// retryable reports whether reconnecting may help.
func retryable(err error) bool {
	if errors.Is(err, errSSETooLarge) || errors.Is(err, errNotStream) {
		return false
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests
	}
	return true // transport errors, dropped streams
}

// stream reads one connection's events. progressed reports whether it
// delivered any; retry is the reconnection time the stream asked for.
func (c *Client) stream(ctx context.Context, workflowID string, lastID *string, connected *bool, fn func(Event) error) (progressed bool, retry time.Duration, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := c.newRequest(ctx, http.MethodGet, c.url(nil, "v1", "runs", workflowID, "events"), nil)
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, 0, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		// The run has ended and we have seen all its records (the stream
		// dropped before its end event): the run itself is the end.
		d, err := c.Run(ctx, workflowID, "")
		if err != nil {
			return false, 0, err
		}
		data, err := json.Marshal(d)
		if err != nil {
			return false, 0, err
		}
		if err := fn(Event{ID: *lastID, Name: EventEnd, Data: data}); err != nil {
			return true, 0, callbackError{err}
		}
		return true, 0, nil
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, 0, apiError(resp.StatusCode, body)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, 0, fmt.Errorf("%w from %s, got Content-Type %q", errNotStream, req.URL.Path, resp.Header.Get("Content-Type"))
	}
	*connected = true
	body := &idleReader{r: resp.Body}
	if c.reconnect.idle > 0 {
		body.timer = time.AfterFunc(c.reconnect.idle, func() { cancel(errIdle) })
		body.idle = c.reconnect.idle
		defer body.timer.Stop()
	}
	p := newSSEParser(body, *lastID)
	for {
		ev, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errStreamEnded
			} else if errors.Is(context.Cause(ctx), errIdle) {
				err = fmt.Errorf("no event or keepalive for %s: %w", c.reconnect.idle, errIdle)
			}
			return progressed, p.retry, fmt.Errorf("follow the events of run %s: %w", workflowID, err)
		}
		*lastID = ev.ID
		progressed = true
		e := Event{ID: ev.ID, Name: ev.Name, Data: json.RawMessage(ev.Data)}
		if err := fn(e); err != nil {
			return progressed, p.retry, callbackError{err}
		}
		if ev.Name == EventEnd {
			return progressed, p.retry, nil
		}
	}
}

// idleReader restarts an idle timer on every read that returns data.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (r *idleReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 && r.timer != nil {
		r.timer.Reset(r.idle)
	}
	return n, err
}
