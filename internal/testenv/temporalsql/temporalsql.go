// Package temporalsql prepares a PostgreSQL server for Temporal the way a
// production cluster's is: two databases, Temporal's schema and its
// visibility schema, created with Temporal's own schema tool packages. It
// is for tests (the production topology test runs the embedded Temporal
// server on it); it stays apart from testenv so only tests that need it
// link Temporal's SQL plugins.
package temporalsql

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create the databases
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	pgschema "go.temporal.io/server/schema/postgresql/v12"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
)

// Stores are the two SQL stores a Temporal server needs.
type Stores struct {
	Default, Visibility *config.SQL
}

// For is the stores on the PostgreSQL server of adminURL (a postgres://
// URL) that Prepare sets up.
func For(adminURL string) (Stores, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return Stores{}, err
	}
	store := func(name string) *config.SQL {
		pw, _ := u.User.Password()
		return &config.SQL{
			PluginName:      postgresql.PluginNamePGX,
			DatabaseName:    name,
			ConnectAddr:     u.Host,
			ConnectProtocol: "tcp",
			User:            u.User.Username(),
			Password:        pw,
			// Test servers allow few connections; a production
			// cluster's pools are larger.
			MaxConns:     10,
			MaxIdleConns: 10,
		}
	}
	return Stores{Default: store("temporal"), Visibility: store("temporal_visibility")}, nil
}

// Prepare creates the databases temporal and temporal_visibility on the
// PostgreSQL server of adminURL (a user allowed to create databases) and
// sets up both schemas at the versions this server build expects.
func Prepare(ctx context.Context, adminURL string) (Stores, error) {
	s, err := For(adminURL)
	if err != nil {
		return Stores{}, err
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return Stores{}, err
	}
	defer db.Close()
	for _, name := range []string{s.Default.DatabaseName, s.Visibility.DatabaseName} {
		if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			return Stores{}, fmt.Errorf("create database %s: %w", name, err)
		}
	}
	setup := []struct {
		cfg     *config.SQL
		name    string
		version string
	}{
		{s.Default, "postgresql/v12/temporal", pgschema.Version},
		{s.Visibility, "postgresql/v12/visibility", pgschema.VisibilityVersion},
	}
	for _, st := range setup {
		conn, err := sqltool.NewConnection(st.cfg, log.NewNoopLogger())
		if err != nil {
			return Stores{}, fmt.Errorf("connect to %s: %w", st.cfg.DatabaseName, err)
		}
		err = schema.NewSetupSchemaTask(conn, &schema.SetupConfig{SchemaName: st.name, InitialVersion: st.version}, log.NewNoopLogger()).Run()
		conn.Close()
		if err != nil {
			return Stores{}, fmt.Errorf("schema %s: %w", st.name, err)
		}
	}
	return s, nil
}
