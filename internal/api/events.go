package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/httpjson"
	"github.com/salve-sre/salve/internal/runs"
)

// keepalive is how often an idle event stream sends a comment, so proxies
// and load balancers do not close it.
const keepalive = 15 * time.Second

// DefaultMaxStreams is how many event streams one caller may hold open:
// a dashboard tab holds one; each stream polls the audit store.
const DefaultMaxStreams = 8

// streamWriteTimeout drops a stream whose client stopped reading.
const streamWriteTimeout = 30 * time.Second

// streamCounter counts open event streams per caller.
type streamCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// take reserves a stream for who, or reports false at the limit.
func (c *streamCounter) take(who string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[who] >= limit {
		return false
	}
	c.n[who]++
	return true
}

func (c *streamCounter) give(who string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[who]--; c.n[who] <= 0 {
		delete(c.n, who)
	}
}

// runEvents serves GET /v1/runs/{id}/events: the run's audit records as
// Server-Sent Events, in order, as they are written. Each event's id is
// the record's sequence number: a client that reconnects with
// Last-Event-ID misses nothing. The stream ends with an "end" event
// carrying the run's final detail.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx := r.Context()
	d, err := s.Runs.Get(ctx, id, r.URL.Query().Get("runId"))
	if err != nil {
		if errors.Is(err, runs.ErrNotFound) {
			httpjson.WriteError(w, http.StatusNotFound, err.Error(), nil)
			return
		}
		s.runError(w, "read the run", err)
		return
	}
	runID := d.RunID
	var after int64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "Last-Event-ID / after must be an event id from this stream", nil)
			return
		}
		after = n
		break
	}
	if after > 0 && d.Status != runs.StatusRunning {
		// A client reconnecting to the stream of a finished run: if it has
		// seen everything, 204 tells an EventSource to stop reconnecting.
		recs, err := s.Audit.Query(ctx, audit.Filter{WorkflowID: id, AfterSeq: after, Limit: 1})
		if err == nil && len(recs) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpjson.WriteError(w, http.StatusInternalServerError, "streaming is not supported by this connection", nil)
		return
	}
	who := principal(r).Subject
	limit := s.MaxStreams
	if limit <= 0 {
		limit = DefaultMaxStreams
	}
	if !s.streams.take(who, limit) {
		w.Header().Set("Retry-After", "10")
		httpjson.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("%s already holds %d open event streams (the limit): close one (a browser tab) and retry", who, limit), nil)
		return
	}
	defer s.streams.give(who)
	// The server's write timeout is for ordinary answers: a stream lives
	// as long as its run, and is dropped only when its client stops
	// reading for streamWriteTimeout.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	flusher.Flush()

	poll := s.EventsPoll
	if poll <= 0 {
		poll = 300 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	lastWrite := time.Now()
	var closedSince time.Time
	for polls := 0; ; polls++ {
		recs, err := s.Audit.Query(ctx, audit.Filter{WorkflowID: id, AfterSeq: after, Limit: 1000})
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("run events: read audit", "error", err)
			fmt.Fprintf(w, ": audit store unavailable, retrying\n\n")
		}
		finished := false
		for _, rec := range recs {
			after = rec.Seq
			if rec.Event.RunID != "" && rec.Event.RunID != runID {
				continue // an earlier or later run of the same incident
			}
			if err := writeEvent(w, strconv.FormatInt(rec.Seq, 10), rec.Event.Action, rec.Event); err != nil {
				return
			}
			if rec.Event.Action == domain.ActionRunFinished {
				finished = true
			}
		}
		if len(recs) > 0 {
			flusher.Flush()
			lastWrite = time.Now()
			_ = rc.SetWriteDeadline(lastWrite.Add(streamWriteTimeout))
		}
		if !finished && len(recs) == 0 && polls%10 == 9 {
			// A terminated run writes no run.finished: ask Temporal, and end
			// the stream once the run has been closed for a while with no
			// more records.
			if d, err := s.Runs.Get(ctx, id, runID); err == nil && d.Status != runs.StatusRunning {
				if closedSince.IsZero() {
					closedSince = time.Now()
				} else if time.Since(closedSince) > 5*time.Second {
					finished = true
				}
			}
		}
		if finished {
			final, err := s.Runs.Get(ctx, id, runID)
			if err != nil {
				final = d
			}
			_ = writeEvent(w, strconv.FormatInt(after, 10), "end", final)
			flusher.Flush()
			return
		}
		if time.Since(lastWrite) > keepalive {
			fmt.Fprintf(w, ": keepalive\n\n")
			flusher.Flush()
			lastWrite = time.Now()
			_ = rc.SetWriteDeadline(lastWrite.Add(streamWriteTimeout))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func writeEvent(w http.ResponseWriter, id, name string, v any) error {
	b, err := jsonLine(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", id, name, b)
	return err
}
