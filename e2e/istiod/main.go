// Command istiod is Istio's pilot-discovery, built from the istio.io/istio
// module at the version e2e/istio-validate links, so the end-to-end tests can
// run the real control plane against their kube-apiserver and let it
// configure Envoy (docs/design.md §6). It is pilot-discovery's own main.
package main

import (
	"os"

	"istio.io/istio/pilot/cmd/pilot-discovery/app"
	"istio.io/istio/pkg/log"
)

func main() {
	log.EnableKlogWithCobra()
	rootCmd := app.NewRootCommand()
	if err := rootCmd.Execute(); err != nil {
		log.Error(err)
		os.Exit(-1)
	}
}
