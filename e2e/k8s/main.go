// Command kubeserver bundles the two control-plane peers the end-to-end tests
// start: "kubeserver etcd [flags]" and "kubeserver kube-apiserver [flags]".
// kube-apiserver cannot be installed with "go install" (its module replaces
// staging modules with local paths), so this module pins one release.
package main

import (
	"fmt"
	"os"

	_ "time/tzdata" // as in kube-apiserver's own main

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kubeserver etcd|kube-apiserver [flags]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "etcd":
		// etcdmain parses args[1:], so args[0] stands for the program name.
		etcdmain.Main(os.Args[1:])
	case "kube-apiserver":
		cmd := app.NewAPIServerCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	default:
		usage()
	}
}
