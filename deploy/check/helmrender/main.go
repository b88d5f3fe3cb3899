// helmrender renders a Helm chart the way `helm template` does, for checking
// a chart where the helm binary cannot be installed (it is in no Debian,
// PyPI or npm package). It is not helm: it uses the same engine pieces
// (Go's text/template with sprig v3 functions, minus env/expandenv, plus
// Helm's include, tpl, required, toYaml, fromYaml, toJson, fromJson and an
// empty lookup, missing keys rendering as empty) and the same inputs
// (.Values = values.yaml deep-merged with -f files, .Chart from Chart.yaml,
// .Release, .Capabilities, .Template), and checks Chart.yaml's required
// fields. It prints every rendered manifest with a "# Source:" line, as
// helm template does, and exits non-zero on any error.
//
// Build (Debian: golang-go golang-github-masterminds-sprig-dev
// golang-gopkg-yaml.v2-dev):
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o helmrender ./deploy/check/helmrender
// Use:
//   helmrender [-f values.yaml]... [--name RELEASE] [--namespace NS] CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig" // sprig v3 (Debian installs it without the /v3 suffix, GOPATH mode)
	yaml "gopkg.in/yaml.v2"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// normalize turns yaml.v2's map[interface{}]interface{} into
// map[string]interface{}, as Helm's values are.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]interface{}:
		for k, val := range t {
			t[k] = normalize(val)
		}
		return t
	case []interface{}:
		for i, val := range t {
			t[i] = normalize(val)
		}
		return t
	}
	return v
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw interface{}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", path)
	}
	return m, nil
}

// merge overlays src on dst (maps merge recursively, everything else replaces).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	// Helm goes through JSON (sigs.k8s.io/yaml); do the same so types match.
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var back interface{}
	if err := yaml.Unmarshal(j, &back); err != nil {
		return ""
	}
	out, err := yaml.Marshal(back)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

var semver = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
var chartName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "helmrender: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	var files valueFiles
	release, namespace, chartDir := "aionbd", "default", ""
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-f", "--values":
			i++
			files.Set(args[i])
		case "--name":
			i++
			release = args[i]
		case "--namespace", "-n":
			i++
			namespace = args[i]
		default:
			if chartDir != "" {
				fail("unexpected argument %q", args[i])
			}
			chartDir = args[i]
		}
	}
	if chartDir == "" {
		fail("usage: helmrender [-f values.yaml]... [--name RELEASE] [--namespace NS] CHART_DIR")
	}

	chart, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		fail("%v", err)
	}
	// Chart.yaml: what helm lint requires.
	if chart["apiVersion"] != "v2" {
		fail("Chart.yaml: apiVersion must be v2 (Helm 3)")
	}
	name, _ := chart["name"].(string)
	if !chartName.MatchString(name) {
		fail("Chart.yaml: name %q is not a valid chart name", name)
	}
	if base := filepath.Base(filepath.Clean(chartDir)); base != name {
		fail("Chart.yaml: name %q differs from the directory name %q", name, base)
	}
	version, _ := chart["version"].(string)
	if !semver.MatchString(version) {
		fail("Chart.yaml: version %q is not SemVer 2", version)
	}
	if t, ok := chart["type"]; ok && t != "application" && t != "library" {
		fail("Chart.yaml: type must be application or library")
	}
	appVersion := fmt.Sprint(chart["appVersion"])

	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		fail("%v", err)
	}
	for _, f := range files {
		over, err := readYAML(f)
		if err != nil {
			fail("%v", err)
		}
		values = merge(values, over)
	}

	top := map[string]interface{}{
		"Values": values,
		"Chart": map[string]interface{}{
			"Name": name, "Version": version, "AppVersion": appVersion,
			"Description": chart["description"], "Type": chart["type"],
		},
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.31.0", "Major": "1", "Minor": "31", "GitVersion": "v1.31.0"},
			"APIVersions": []string{"v1", "apps/v1"},
		},
	}

	root := template.New("gotpl")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		var raw interface{}
		if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := normalize(raw).(map[string]interface{})
		return m
	}
	funcs["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, fmt.Errorf(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, fmt.Errorf(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(n string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	var names []string
	err = filepath.Walk(filepath.Join(chartDir, "templates"), func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(chartDir, p)
		tname := filepath.ToSlash(filepath.Join(name, rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(tname).Parse(string(b)); err != nil {
			return err
		}
		names = append(names, tname)
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	sort.Strings(names)
	rendered := 0
	for _, n := range names {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": name + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			fail("%v", err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			continue // rendered (so checked) but, as in helm template, not printed
		}
		if strings.TrimSpace(out) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, strings.TrimRight(out, "\n"))
		rendered++
	}
	if rendered == 0 {
		fail("no manifest rendered")
	}
}
