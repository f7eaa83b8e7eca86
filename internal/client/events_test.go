package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fastBackoff keeps reconnect tests quick.
var fastBackoff = backoff{initial: time.Millisecond, max: 10 * time.Millisecond, attempts: 5, idle: time.Minute}

// eventServer serves /v1/runs/{id}/events with handler, recording each
// connection's Last-Event-ID.
type eventServer struct {
	mu      sync.Mutex
	lastIDs []string
	srv     *httptest.Server
}

func newEventServer(t *testing.T, handler func(conn int, w http.ResponseWriter, r *http.Request)) (*eventServer, *Client) {
	t.Helper()
	es := &eventServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/runs/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, wfID, r.PathValue("id"))
		assert.Equal(t, "text/event-stream", r.Header.Get("Accept"))
		assert.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
		es.mu.Lock()
		es.lastIDs = append(es.lastIDs, r.Header.Get("Last-Event-ID"))
		conn := len(es.lastIDs)
		es.mu.Unlock()
		handler(conn, w, r)
	})
	es.srv = httptest.NewServer(mux)
	t.Cleanup(es.srv.Close)
	c, err := New(Config{Addr: es.srv.URL, Token: "tok"})
	require.NoError(t, err)
	c.reconnect = fastBackoff
	return es, c
}

func (es *eventServer) ids() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]string(nil), es.lastIDs...)
}

func streamHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

func sendEvent(w http.ResponseWriter, id int, name, data string) {
	fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, name, data)
	w.(http.Flusher).Flush()
}

const endData = `{"workflowId":"` + wfID + `","status":"succeeded","run":{"state":"succeeded"}}`

func collect(t *testing.T, c *Client) ([]Event, error) {
	t.Helper()
	var got []Event
	err := c.Events(context.Background(), wfID, func(ev Event) error {
		got = append(got, ev)
		return nil
	})
	return got, err
}

func TestEvents(t *testing.T) {
	_, c := newEventServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		streamHeaders(w)
		fmt.Fprint(w, ": hello\n\n")
		sendEvent(w, 1, "run.started", `{"action":"run.started","workflowId":"`+wfID+`"}`)
		sendEvent(w, 2, "step.started", `{"action":"step.started","step":"restart"}`)
		sendEvent(w, 3, "end", endData)
		// The server closes after end; anything after it is not read.
	})
	got, err := collect(t, c)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "step.started", got[1].Name)
	require.Equal(t, "2", got[1].ID)
	ev, err := got[1].Audit()
	require.NoError(t, err)
	require.Equal(t, "restart", ev.Step)
	require.Equal(t, EventEnd, got[2].Name)
	d, err := got[2].Final()
	require.NoError(t, err)
	require.Equal(t, "succeeded", d.Run.State)
}

// A stream that drops is resumed after the last event seen, through a
// server that is briefly away (refused connections, then a 503).
func TestEventsReconnectWithLastEventID(t *testing.T) {
	var srv *eventServer
	srv, c := newEventServer(t, func(conn int, w http.ResponseWriter, r *http.Request) {
		switch conn {
		case 1:
			streamHeaders(w)
			sendEvent(w, 1, "run.started", `{"action":"run.started"}`)
			sendEvent(w, 2, "step.started", `{"action":"step.started","step":"a"}`)
			// The connection drops before the end event.
		case 2:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"restarting"}`)
		default:
			assert.Equal(t, "2", r.Header.Get("Last-Event-ID"))
			streamHeaders(w)
			sendEvent(w, 3, "step.succeeded", `{"action":"step.succeeded","step":"a"}`)
			sendEvent(w, 4, "end", endData)
		}
	})
	got, err := collect(t, c)
	require.NoError(t, err)
	names := []string{}
	for _, ev := range got {
		names = append(names, ev.Name)
	}
	require.Equal(t, []string{"run.started", "step.started", "step.succeeded", "end"}, names)
	require.Equal(t, []string{"", "2", "2"}, srv.ids())
}

// The same across a real server restart: the listener goes away (refused
// connections) and comes back on the same address.
func TestEventsSurviveServerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	var (
		mu      sync.Mutex
		lastIDs []string
	)
	handler := func(first bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			mu.Unlock()
			streamHeaders(w)
			if first {
				sendEvent(w, 1, "run.started", `{"action":"run.started"}`)
				<-r.Context().Done() // until the server shuts down
				return
			}
			sendEvent(w, 2, "end", endData)
		})
	}
	srv1 := &http.Server{Handler: handler(true)}
	go func() { _ = srv1.Serve(ln) }()

	c, err := New(Config{Addr: "http://" + addr})
	require.NoError(t, err)
	c.reconnect = backoff{initial: 5 * time.Millisecond, max: 20 * time.Millisecond, attempts: 200, idle: time.Minute}
	started := make(chan struct{})
	done := make(chan error, 1)
	var names []string
	go func() {
		done <- c.Events(context.Background(), wfID, func(ev Event) error {
			names = append(names, ev.Name)
			if ev.Name == "run.started" {
				close(started)
			}
			return nil
		})
	}()
	<-started
	require.NoError(t, srv1.Close()) // drops the stream; connections are refused now
	time.Sleep(30 * time.Millisecond)
	ln2, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv2 := &http.Server{Handler: handler(false)}
	go func() { _ = srv2.Serve(ln2) }()
	defer srv2.Close()

	require.NoError(t, <-done)
	require.Equal(t, []string{"run.started", "end"}, names)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"", "1"}, lastIDs)
}

func TestEventsGivesUp(t *testing.T) {
	srv, c := newEventServer(t, func(conn int, w http.ResponseWriter, _ *http.Request) {
		streamHeaders(w)
		if conn == 1 {
			sendEvent(w, 1, "run.started", `{}`)
		}
		// Then every stream closes without an event.
	})
	_, err := collect(t, c)
	require.ErrorIs(t, err, errStreamEnded)
	require.ErrorContains(t, err, "gave up after 5 reconnects")
	require.Len(t, srv.ids(), 1+fastBackoff.attempts)
}

func TestEventsNoRetryFor4xx(t *testing.T) {
	srv, c := newEventServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"run not found: salve/restart-crashlooping/shop/api"}`)
	})
	_, err := collect(t, c)
	require.Equal(t, http.StatusNotFound, StatusCode(err))
	require.Len(t, srv.ids(), 1)
}

func TestEventsFirstConnectFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := New(Config{Addr: addr})
	require.NoError(t, err)
	err = c.Events(context.Background(), wfID, func(Event) error { return nil })
	_, ok := errors.AsType[*UnreachableError](err)
	require.True(t, ok, "%v", err)
}

func TestEventsNotAStream(t *testing.T) {
	_, c := newEventServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>")
	})
	_, err := collect(t, c)
	require.ErrorContains(t, err, "want an event stream")
}

func TestEventsCallbackErrorStops(t *testing.T) {
	srv, c := newEventServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		streamHeaders(w)
		sendEvent(w, 1, "run.started", `{}`)
		sendEvent(w, 2, "end", endData)
	})
	stop := errors.New("stop")
	err := c.Events(context.Background(), wfID, func(Event) error { return stop })
	require.Equal(t, stop, err)
	require.Len(t, srv.ids(), 1)
}

// A stream that goes silent (no events, no keepalives) counts as dropped.
func TestEventsIdleStreamReconnects(t *testing.T) {
	srv, c := newEventServer(t, func(conn int, w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		if conn == 1 {
			sendEvent(w, 1, "run.started", `{}`)
			<-r.Context().Done()
			return
		}
		sendEvent(w, 2, "end", endData)
	})
	c.reconnect.idle = 50 * time.Millisecond
	got, err := collect(t, c)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, []string{"", "1"}, srv.ids())
}

func TestEventsContextCancel(t *testing.T) {
	_, c := newEventServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		sendEvent(w, 1, "run.started", `{}`)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	err := c.Events(ctx, wfID, func(Event) error { cancel(); return nil })
	require.ErrorIs(t, err, context.Canceled)
}
