// Package devnats runs an embedded NATS server with JetStream for `salve dev`
// and tests. It is apart from devstack so NATS-only tools do not link the
// Temporal server.
package devnats

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures the embedded NATS server.
type Options struct {
	StoreDir string // JetStream file store; required
	Host     string // default 127.0.0.1
	Port     int    // 0 = a free port
}

// NATS is an embedded NATS server with JetStream.
type NATS struct {
	srv *server.Server
}

// Start starts an embedded NATS server with JetStream on a file store
// and waits until it accepts connections.
func Start(o Options) (*NATS, error) {
	if o.StoreDir == "" {
		return nil, errors.New("nats: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "salve-dev",
		Host:       o.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true, // signals belong to salve's main
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: not ready after 10s on %s:%d (is the port in use?)", o.Host, o.Port)
	}
	return &NATS{srv: srv}, nil
}

// URL is the client URL.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Stop shuts the server down and waits for it.
func (n *NATS) Stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}
