// Command istio-validate checks Istio configuration offline with Istio's own
// code, the way istioctl validate and istiod do, so the end-to-end tests can
// prove that what the controller renders would be accepted by a real mesh.
//
//	istio-validate policy FILE...   AuthorizationPolicy (or other Istio) YAML
//	istio-validate mesh FILE        MeshConfig YAML, or a ConfigMap with key "mesh"
//
// It prints "FILE: ok" per valid file and exits 0; otherwise it prints
// "FILE: <reason>" on stderr and exits 1 (2 for usage errors).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
	"istio.io/istio/pkg/config/validation/agent"
	"istio.io/istio/pkg/log"
	"istio.io/istio/pkg/util/protomarshal"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// topLevelFields are the only keys istioctl validate accepts on an object.
var topLevelFields = map[string]bool{
	"apiVersion": true, "kind": true, "metadata": true, "spec": true, "status": true,
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: istio-validate policy FILE... | istio-validate mesh FILE")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var check func([]byte) error
	switch os.Args[1] {
	case "policy":
		check = validatePolicies
	case "mesh":
		if len(os.Args) != 3 {
			usage()
		}
		check = validateMesh
	default:
		usage()
	}
	// Findings come back as errors; Istio's own warning logs would only
	// repeat them on stderr.
	for _, s := range log.Scopes() {
		s.SetOutputLevel(log.ErrorLevel)
	}
	failed := false
	for _, path := range os.Args[2:] {
		data, err := os.ReadFile(path)
		if err == nil {
			err = check(data)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: ok\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// validatePolicies rejects unknown kinds and unknown fields (as istioctl
// validate does), then runs crd.ParseInputs, which converts every object and
// applies its schema's validation.
func validatePolicies(data []byte) error {
	n, err := checkStrict(data)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no objects")
	}
	_, others, err := crd.ParseInputs(string(data))
	if err != nil {
		return err
	}
	if len(others) > 0 {
		return fmt.Errorf("unknown kind %q (%s)", others[0].Kind, others[0].APIVersion)
	}
	return nil
}

// checkStrict decodes each YAML document and checks its fields strictly;
// it returns how many objects it saw.
func checkStrict(data []byte) (int, error) {
	dec := kubeyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 512*1024)
	n := 0
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("cannot parse yaml: %v", err)
		}
		if len(obj) == 0 {
			continue
		}
		n++
		if err := checkObject(obj); err != nil {
			return n, err
		}
	}
}

func checkObject(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	what := fmt.Sprintf("%s %q", kind, name)
	for key := range obj {
		if !topLevelFields[key] {
			return fmt.Errorf("%s: unknown field %q", what, key)
		}
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	gvk := gv.WithKind(kind)
	s, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(resource.FromKubernetesGVK(&gvk))
	if !ok {
		return fmt.Errorf("unknown kind %q (%s)", kind, apiVersion)
	}
	spec, err := json.Marshal(obj["spec"])
	if err != nil {
		return err
	}
	inst, err := s.NewInstance()
	if err != nil {
		return err
	}
	if err := config.ApplyJSONStrict(inst, string(spec)); err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	return nil
}

// validateMesh parses the mesh config strictly (istiod would drop unknown
// fields silently), applies it over Istio's defaults with
// mesh.ApplyMeshConfigDefaults (which runs ValidateMeshConfig), then turns
// the extension-provider findings, which istiod only logs, into errors.
func validateMesh(data []byte) error {
	text, err := meshText(data)
	if err != nil {
		return err
	}
	raw := &meshconfig.MeshConfig{}
	if err := protomarshal.ApplyYAMLStrict(text, raw); err != nil {
		return fmt.Errorf("strict parse: %v", err)
	}
	if _, err := mesh.ApplyMeshConfigDefaults(text); err != nil {
		return err
	}
	// The providers as written: applying over the defaults would merge
	// two providers of the same name into one.
	return validateProviders(raw.ExtensionProviders)
}

// meshText returns the MeshConfig YAML: the file itself, or the "mesh" key
// of a ConfigMap such as istio-system/istio.
func meshText(data []byte) (string, error) {
	var probe struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return "", fmt.Errorf("cannot parse yaml: %v", err)
	}
	if probe.Kind != "ConfigMap" {
		return string(data), nil
	}
	text, ok := probe.Data["mesh"]
	if !ok {
		return "", errors.New(`configmap has no "mesh" key`)
	}
	return text, nil
}

func validateProviders(providers []*meshconfig.MeshConfig_ExtensionProvider) error {
	var errs []error
	seen := map[string]bool{}
	for _, p := range providers {
		if p.Name == "" {
			errs = append(errs, errors.New("extension provider with empty name"))
		} else if seen[p.Name] {
			errs = append(errs, fmt.Errorf("duplicate extension provider %q", p.Name))
		}
		seen[p.Name] = true
		var err error
		switch v := p.Provider.(type) {
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			err = agent.ValidateExtensionProviderEnvoyExtAuthzHTTP(v.EnvoyExtAuthzHttp)
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			err = agent.ValidateExtensionProviderEnvoyExtAuthzGRPC(v.EnvoyExtAuthzGrpc)
		case nil:
			err = errors.New("no provider type set")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("extension provider %q: %v", p.Name, err))
		}
	}
	return errors.Join(errs...)
}
