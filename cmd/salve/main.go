// Command salve is Salve's single binary; see `salve --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/salve-sre/salve/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
