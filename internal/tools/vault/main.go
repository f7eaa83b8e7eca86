// Command vault is a real HashiCorp Vault v1.14.0 server for Salve's
// integration tests and local development: Vault's own core
// (github.com/hashicorp/vault/vault) and HTTP API handler
// (github.com/hashicorp/vault/http), composed here with only the engines
// Salve uses, in dev mode — in-memory storage, a single Shamir key, already
// initialised and unsealed, plain HTTP on loopback.
//
// It mimics the part of `vault server -dev` that tests need:
//
//	vault server -dev -dev-listen-address=127.0.0.1:8200 -dev-root-token-id=root
//
// Mounted engines and available types:
//   - secret/: KV version 2 (github.com/hashicorp/vault-plugin-secrets-kv,
//     the factory Vault's dev mode uses), mounted at start like `-dev` does;
//   - secrets engine types "kv" and "kubernetes"
//     (github.com/hashicorp/vault-plugin-secrets-kubernetes);
//   - auth methods "token" (always) and "approle";
//   - audit device type "file".
//
// Vault's full `command` package is not used: it imports every storage
// backend and plugin, and at the versions this module proxy serves it does
// not compile unmodified (see /work/shared/RECIPES.md). This main follows
// command/server.go's dev mode (createCoreConfig, enableDev) with Vault's
// public library APIs; Vault's own code is not copied or patched.
//
// No transit: with the sdk that v1.14.0's go.mod requires
// (v0.9.2-0.20230530190758-08ee474850e0) builtin/logical/transit does not
// compile (keysutil.Policy.WrapKey is missing), and the served sdk v0.9.2
// that has it panics at the first request to sys/ ("Pattern managed-keys/...
// defines a CreateOperation but no ExistenceCheck").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	aeadwrapper "github.com/hashicorp/go-kms-wrapping/wrappers/aead/v2"
	kubernetes "github.com/hashicorp/vault-plugin-secrets-kubernetes"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/audit"
	auditFile "github.com/hashicorp/vault/builtin/audit/file"
	credAppRole "github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/logging"
	"github.com/hashicorp/vault/sdk/logical"
	physInmem "github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
	vaultseal "github.com/hashicorp/vault/vault/seal"
	"github.com/hashicorp/vault/version"
)

var (
	logicalBackends = map[string]logical.Factory{
		"kv":         kv.Factory,
		"kubernetes": kubernetes.Factory,
	}
	credentialBackends = map[string]logical.Factory{
		"approle": credAppRole.Factory,
	}
	auditBackends = map[string]audit.Factory{
		"file": auditFile.Factory,
	}
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage() {
	fmt.Fprintf(os.Stderr, `Usage: vault server -dev [-dev-listen-address=127.0.0.1:8200] [-dev-root-token-id=TOKEN] [-log-level=info]
       vault version

A Vault %s dev-mode server (in memory, unsealed, plain HTTP) with the
kv (v2 at secret/) and kubernetes secrets engines, the token and
approle auth methods and the file audit device.
`, version.GetVersion().Version)
}

func run(args []string) int {
	if len(args) == 0 {
		usage()
		return 1
	}
	switch args[0] {
	case "version", "-version", "--version":
		fmt.Printf("Vault v%s (salve dev build: core + http handler, composed)\n", version.GetVersion().Version)
		return 0
	case "server":
	default:
		usage()
		return 1
	}

	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.Usage = usage
	dev := fs.Bool("dev", false, "run in dev mode (required: this build only has dev mode)")
	listenAddr := fs.String("dev-listen-address", envOr("VAULT_DEV_LISTEN_ADDRESS", "127.0.0.1:8200"), "address to serve plain HTTP on")
	rootToken := fs.String("dev-root-token-id", os.Getenv("VAULT_DEV_ROOT_TOKEN_ID"), "root token ID (random if empty)")
	kvV1 := fs.Bool("dev-kv-v1", false, "mount secret/ as KV version 1 instead of 2")
	exitOnEOF := fs.Bool("exit-on-stdin-eof", false, "shut down when stdin reaches EOF (not a Vault flag: lets a test harness tie the server's life to its own)")
	logLevel := fs.String("log-level", envOr("VAULT_LOG_LEVEL", "info"), "trace, debug, info, warn or error")
	if err := fs.Parse(args[1:]); err != nil {
		return 1
	}
	if !*dev {
		fmt.Fprintln(os.Stderr, "error: only dev mode is supported; pass -dev")
		return 1
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(os.Stderr, "error: unknown log level %q\n", *logLevel)
		return 1
	}
	logger := logging.NewVaultLogger(level)

	if err := serve(logger, *listenAddr, *rootToken, *kvV1, *exitOnEOF); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func serve(logger hclog.Logger, listenAddr, rootToken string, kvV1, exitOnEOF bool) error {
	start := time.Now()
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	apiAddr := "http://" + ln.Addr().String()

	storage, err := physInmem.NewInmem(nil, logger.Named("storage.inmem"))
	if err != nil {
		return fmt.Errorf("in-memory storage: %w", err)
	}
	coreConfig := &vault.CoreConfig{
		Physical:            storage,
		StorageType:         "inmem",
		RedirectAddr:        apiAddr,
		Seal:                vault.NewDefaultSeal(vaultseal.NewAccess(aeadwrapper.NewShamirWrapper())),
		AuditBackends:       auditBackends,
		CredentialBackends:  credentialBackends,
		LogicalBackends:     logicalBackends,
		BuiltinRegistry:     registry{},
		Logger:              logger,
		DisableMlock:        true,
		EnableRaw:           true, // as -dev does
		EnableIntrospection: true, // as -dev does
		DevToken:            rootToken,
	}
	core, err := vault.NewCore(coreConfig)
	if err != nil {
		if vault.IsFatalError(err) {
			return fmt.Errorf("initializing core: %w", err)
		}
		logger.Warn("non-fatal error initializing core", "error", err)
	}
	defer core.Shutdown()

	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core: core,
		ListenerConfig: &configutil.Listener{
			Type:       "tcp",
			Address:    ln.Addr().String(),
			TLSDisable: true,
		},
	})
	// As command/server.go: before the first unseal.
	core.SetClusterHandler(handler)

	root, err := enableDev(core, rootToken, kvV1)
	if err != nil {
		return fmt.Errorf("initializing dev mode: %w", err)
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          logger.StandardLogger(nil),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	kvVer := "2"
	if kvV1 {
		kvVer = "1"
	}
	fmt.Printf("==> Vault server started (dev mode). Version: %s\n", version.GetVersion().Version)
	fmt.Printf("    Api Address: %s\n", apiAddr)
	fmt.Printf("    Storage: inmem; secret/ is KV v%s; engines: kv kubernetes; auth: token approle; audit: file\n", kvVer)
	fmt.Printf("    Root Token: %s\n", root)
	fmt.Printf("==> Vault is ready: initialized and unsealed in %s, serving %s\n",
		time.Since(start).Round(time.Millisecond), apiAddr)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	if exitOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig)
	case <-stdinClosed:
		logger.Info("shutting down: stdin closed")
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return nil
}

// enableDev initialises the core with one Shamir key, unseals it, replaces
// the initial root token with rootToken (when set) and mounts secret/ as
// KV v2 — the steps of command/server.go's enableDev in Vault v1.14.0.
func enableDev(core *vault.Core, rootToken string, kvV1 bool) (string, error) {
	ctx := namespace.ContextWithNamespace(context.Background(), namespace.RootNamespace)

	barrierConfig := &vault.SealConfig{SecretShares: 1, SecretThreshold: 1}
	var recoveryConfig *vault.SealConfig
	if core.SealAccess().RecoveryKeySupported() {
		recoveryConfig = &vault.SealConfig{SecretShares: 1, SecretThreshold: 1}
	}
	if core.SealAccess().StoredKeysSupported() != vaultseal.StoredKeysNotSupported {
		barrierConfig.StoredShares = 1
	}
	init, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig:  barrierConfig,
		RecoveryConfig: recoveryConfig,
	})
	if err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	if core.SealAccess().StoredKeysSupported() == vaultseal.StoredKeysSupportedGeneric {
		if err := core.UnsealWithStoredKeys(ctx); err != nil {
			return "", fmt.Errorf("unseal: %w", err)
		}
	} else {
		key := make([]byte, len(init.SecretShares[0]))
		copy(key, init.SecretShares[0])
		unsealed, err := core.Unseal(key)
		if err != nil {
			return "", fmt.Errorf("unseal: %w", err)
		}
		if !unsealed {
			return "", errors.New("unseal: core is still sealed")
		}
	}
	if _, _, _, err := core.Leader(); err != nil && !errors.Is(err, vault.ErrHANotEnabled) {
		return "", fmt.Errorf("checking active status: %w", err)
	}

	root := init.RootToken
	if rootToken != "" {
		resp, err := core.HandleRequest(ctx, &logical.Request{
			ID:          "dev-gen-root",
			Operation:   logical.UpdateOperation,
			ClientToken: root,
			Path:        "auth/token/create",
			Data: map[string]any{
				"id":                rootToken,
				"policies":          []string{"root"},
				"no_parent":         true,
				"no_default_policy": true,
			},
		})
		if err != nil {
			return "", fmt.Errorf("creating root token %q: %w", rootToken, err)
		}
		if resp == nil || resp.Auth == nil {
			return "", fmt.Errorf("creating root token %q: no auth in the response", rootToken)
		}
		if _, err := core.HandleRequest(ctx, &logical.Request{
			ID:          "dev-revoke-init-root",
			Operation:   logical.UpdateOperation,
			ClientToken: root,
			Path:        "auth/token/revoke-self",
		}); err != nil {
			return "", fmt.Errorf("revoking the initial root token: %w", err)
		}
		root = resp.Auth.ClientToken
	}

	kvVer := "2"
	if kvV1 {
		kvVer = "1"
	}
	resp, err := core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		ClientToken: root,
		Path:        "sys/mounts/secret",
		Data: map[string]any{
			"type":        "kv",
			"path":        "secret/",
			"description": "key/value secret storage",
			"options":     map[string]string{"version": kvVer},
		},
	})
	if err != nil {
		return "", fmt.Errorf("mounting secret/: %w", err)
	}
	if resp.IsError() {
		return "", fmt.Errorf("mounting secret/: %w", resp.Error())
	}
	return root, nil
}

// registry is the vault.BuiltinRegistry (the plugin catalog's builtins):
// the same factories as the core's backend maps, so `sys/plugins/catalog`
// lists them as builtin, as helper/builtinplugins.Registry does for the
// full set in Vault's own binary.
type registry struct{}

func (registry) backends(t consts.PluginType) map[string]logical.Factory {
	switch t {
	case consts.PluginTypeSecrets:
		return logicalBackends
	case consts.PluginTypeCredential:
		return credentialBackends
	}
	return nil
}

func (r registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.backends(t)[name]
	return ok
}

func (r registry) Get(name string, t consts.PluginType) (func() (any, error), bool) {
	f, ok := r.backends(t)[name]
	if !ok {
		return nil, false
	}
	return func() (any, error) { return f, nil }, true
}

func (r registry) Keys(t consts.PluginType) []string {
	var keys []string
	for k := range r.backends(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if r.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
