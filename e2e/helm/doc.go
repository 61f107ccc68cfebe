// Package helm pins the helm CLI that the chart tests run: the tool line of go.mod names
// helm.sh/helm/v3/cmd/helm, and scripts/build-e2e-tools.sh builds it into the cache.
package helm
