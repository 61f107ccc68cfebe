// monitoring-check validates offline what the portcullis chart gives Prometheus and Grafana:
// every ServiceMonitor and PrometheusRule in the manifests decodes strictly (no unknown field)
// into the Prometheus Operator's monitoring.coreos.com/v1 types, its durations parse, and every
// PromQL expression (alert rules, dashboard targets) parses. On success it prints the metric
// names the expressions select, one per line, so the caller can check that the daemons export
// them.
//
//	helm template ... | monitoring-check [-dashboard portcullis.json]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type checker struct {
	promql  parser.Parser
	metrics map[string]bool
	objects map[string]int
}

// strict decodes JSON into v, refusing fields that v's type does not have.
func strict(doc []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func duration(what string, d *monitoringv1.Duration) error {
	if d == nil || *d == "" {
		return nil
	}
	if _, err := model.ParseDuration(string(*d)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// expr parses one PromQL expression and records the metric names it selects. Grafana's
// variables are replaced by values of their kind first.
func (c *checker) expr(what, e string) error {
	e = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$namespace", "ns").Replace(e)
	ast, err := c.promql.ParseExpr(e)
	if err != nil {
		return fmt.Errorf("%s: %q: %w", what, e, err)
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			c.metrics[vs.Name] = true
		}
		return nil
	})
	return nil
}

func (c *checker) serviceMonitor(doc []byte) error {
	var sm monitoringv1.ServiceMonitor
	if err := strict(doc, &sm); err != nil {
		return err
	}
	if len(sm.Spec.Endpoints) == 0 {
		return errors.New("no endpoints")
	}
	for i := range sm.Spec.Endpoints {
		ep := &sm.Spec.Endpoints[i]
		if ep.Port == "" {
			return fmt.Errorf("endpoints[%d]: no port name", i)
		}
		if err := duration(fmt.Sprintf("endpoints[%d].interval", i), &ep.Interval); err != nil {
			return err
		}
		if err := duration(fmt.Sprintf("endpoints[%d].scrapeTimeout", i), &ep.ScrapeTimeout); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) prometheusRule(doc []byte) error {
	var pr monitoringv1.PrometheusRule
	if err := strict(doc, &pr); err != nil {
		return err
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			what := fmt.Sprintf("group %s, alert %s", g.Name, r.Alert)
			if r.Alert == "" && r.Record == "" {
				return fmt.Errorf("group %s: a rule with neither alert nor record", g.Name)
			}
			if err := duration(what+": for", r.For); err != nil {
				return err
			}
			if err := c.expr(what, r.Expr.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *checker) manifests(r io.Reader) error {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for {
		raw, err := yr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return err
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if string(doc) == "null" || json.Unmarshal(doc, &head) != nil {
			continue
		}
		if head.APIVersion != "monitoring.coreos.com/v1" {
			continue
		}
		switch head.Kind {
		case "ServiceMonitor":
			err = c.serviceMonitor(doc)
		case "PrometheusRule":
			err = c.prometheusRule(doc)
		default:
			err = errors.New("not a kind this check knows")
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
		}
		c.objects[head.Kind]++
	}
}

// dashboard checks every target expression of a Grafana dashboard (rows may nest panels).
func (c *checker) dashboard(path string) error {
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			for _, t := range p.Targets {
				if err := c.expr(fmt.Sprintf("%s: panel %q", path, p.Title), t.Expr); err != nil {
					return err
				}
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(d.Panels)
}

func main() {
	dash := flag.String("dashboard", "", "a Grafana dashboard JSON file to check too")
	flag.Parse()
	c := &checker{promql: parser.NewParser(parser.Options{}), metrics: map[string]bool{},
		objects: map[string]int{}}
	in := io.Reader(os.Stdin)
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, "monitoring-check:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	err := c.manifests(in)
	if err == nil && *dash != "" {
		err = c.dashboard(*dash)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring-check:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(c.metrics))
	for n := range c.metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n)
	}
	fmt.Fprintf(os.Stderr, "monitoring-check: %d ServiceMonitor, %d PrometheusRule, %d metric names\n",
		c.objects["ServiceMonitor"], c.objects["PrometheusRule"], len(names))
}
