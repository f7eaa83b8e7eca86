// Command kube is kube-apiserver, kube-controller-manager and kube-scheduler
// in one binary, for Salve's integration tests (internal/testenv.Kube).
// The first argument picks the component; the rest are its flags:
//
//	kube kube-apiserver --etcd-servers=... ...
//
// It is a module of its own so the main module neither builds it nor
// inherits Kubernetes' dependency graph. scripts/kube-tools.sh builds it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as upstream's mains

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream's mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream's mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream's mains
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	commands := map[string]func() *cobra.Command{
		"kube-apiserver":          apiserver.NewAPIServerCommand,
		"kube-controller-manager": controllermanager.NewControllerManagerCommand,
		"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	}
	name := ""
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	newCmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: %s kube-apiserver|kube-controller-manager|kube-scheduler [flags]\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}
	cmd := newCmd()
	cmd.SetArgs(os.Args[2:])
	os.Exit(cli.Run(cmd))
}
