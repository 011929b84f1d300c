// render: a small stand-in for `helm template`, enough to render and test
// deploy/helm/push where Helm itself cannot be installed (Debian has no
// helm package). It uses Go's text/template with sprig, the same template
// engine and function library Helm uses, and yaml.v3 for values and toYaml.
//
// Build (GOPATH mode, Debian's packaged Go libraries):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render .
//
// Usage:
//
//	render [-f values.yaml]... [--set a.b=c[,d=e]]... [--name R] [--namespace NS] [--notes] CHART
//
// What it covers: values.yaml deep-merged with each -f file then each --set
// (dotted keys; true/false/null, integers and plain strings; a{,b} lists
// as {a,b}); .Release (Name, Namespace, Service, IsInstall, IsUpgrade,
// Revision), .Chart (every Chart.yaml field, Name/Version/AppVersion among
// them), .Values, .Template (Name, BasePath), a minimal .Capabilities
// (KubeVersion 1.28, APIVersions.Has for the built-in groups); the sprig
// functions plus include, tpl, required, fail, toYaml, fromYaml, toJson,
// lookup (always empty, as in helm template); every templates/*.yaml and
// templates/NOTES.txt (files starting with _ only define templates).
// Output: each non-empty document after "---\n# Source: CHART/templates/F",
// like helm template; NOTES.txt is rendered (so its errors show) and
// printed only with --notes. An error, fail or required prints
// "Error: ..." on stderr and exits 1.
//
// What it does not cover (see docs/OPERATIONS.md): dependencies/subcharts
// (charts/ is not read: nats.enabled or redis.enabled render this chart's
// side only), --set with list indexes (a[0]=x) or escaped dots, --set-string
// and --set-file, values.schema.json, hooks, the files/.Files object, CRDs,
// lookup against a cluster, and API validation of the rendered objects.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type multiFlag []string

type apiVersions []string

// Has is what templates call: .Capabilities.APIVersions.Has "policy/v1".
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", args...)
	os.Exit(1)
}

func readYAML(path string) map[string]interface{} {
	raw, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &out); err != nil {
		die("%s: %v", path, err)
	}
	if out == nil {
		out = map[string]interface{}{}
	}
	return out
}

// merge copies src into dst: maps merge key by key, anything else replaces.
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

func parseScalar(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		var list []interface{}
		for _, item := range strings.Split(s[1:len(s)-1], ",") {
			if item != "" {
				list = append(list, parseScalar(item))
			}
		}
		return list
	}
	return s
}

// splitSet splits "a=1,b={x,y}" on the commas outside braces.
func splitSet(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func applySet(values map[string]interface{}, expr string) {
	for _, kv := range splitSet(expr) {
		eq := strings.Index(kv, "=")
		if eq <= 0 {
			die("--set %q: want key=value", kv)
		}
		if strings.ContainsAny(kv[:eq], "[]\\") {
			die("--set %q: list indexes and escapes are not supported by this renderer", kv)
		}
		keys := strings.Split(kv[:eq], ".")
		m := values
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = parseScalar(kv[eq+1:])
	}
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	out := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &out); err != nil {
		out["Error"] = err.Error()
	}
	return out
}

// execError shortens a fail or required error the way Helm prints it:
// "execution error at (push/templates/x.yaml:1:4): MESSAGE"; text/template
// would quote the whole fail call, message included, before the message.
func execError(err error) string {
	text := err.Error()
	for _, mark := range []string{"error calling fail: ", "error calling required: "} {
		if i := strings.LastIndex(text, mark); i >= 0 {
			where := strings.TrimPrefix(text, "template: ")
			if j := strings.Index(where, ": "); j >= 0 {
				where = where[:j]
			}
			return fmt.Sprintf("execution error at (%s): %s", where, text[i+len(mark):])
		}
	}
	return text
}

func main() {
	var valueFiles, sets multiFlag
	release, namespace, chartDir, notes := "push", "default", "", false
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 >= len(args) {
				die("%s needs a value", args[i])
			}
			i++
			return args[i]
		}
		switch a := args[i]; {
		case a == "-f" || a == "--values":
			valueFiles = append(valueFiles, next())
		case a == "--set":
			sets = append(sets, next())
		case a == "--name":
			release = next()
		case a == "--namespace" || a == "-n":
			namespace = next()
		case a == "--notes":
			notes = true
		case strings.HasPrefix(a, "-"):
			die("unknown flag %s", a)
		default:
			chartDir = a
		}
	}
	if chartDir == "" {
		die("usage: render [-f values.yaml]... [--set a.b=c]... [--name R] [--namespace NS] [--notes] CHART")
	}

	chartMeta := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	chart := map[string]interface{}{}
	for k, v := range chartMeta { // .Chart.Name, .Chart.AppVersion, ... as Helm spells them
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	chartName, _ := chart["Name"].(string)
	values := readYAML(filepath.Join(chartDir, "values.yaml"))
	for _, f := range valueFiles {
		values = merge(values, readYAML(f))
	}
	for _, s := range sets {
		applySet(values, s)
	}

	files, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(files)
	root := template.New("root").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env") // as Helm: no access to the renderer's environment
	delete(funcs, "expandenv")
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err == nil {
			t, err = t.New("tpl").Parse(text)
		}
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["lookup"] = func(...interface{}) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs)

	var rendered []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			die("%v", err)
		}
		name := chartName + "/templates/" + filepath.Base(f)
		if _, err := root.New(name).Parse(string(raw)); err != nil {
			die("parse error in %s: %v", name, err)
		}
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "_") &&
			(strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || base == "NOTES.txt") {
			rendered = append(rendered, name)
		}
	}

	caps := map[string]interface{}{
		"KubeVersion": map[string]interface{}{"Version": "v1.28.0", "Major": "1", "Minor": "28",
			"GitVersion": "v1.28.0"},
		"APIVersions": apiVersions{"v1", "apps/v1", "policy/v1", "autoscaling/v2",
			"networking.k8s.io/v1", "batch/v1"},
	}
	var out, notesOut bytes.Buffer
	for _, name := range rendered {
		top := map[string]interface{}{
			"Values": values,
			"Chart":  chart,
			"Release": map[string]interface{}{"Name": release, "Namespace": namespace,
				"Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
			"Capabilities": caps,
			"Template": map[string]interface{}{"Name": name,
				"BasePath": chartName + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, top); err != nil {
			die("%s", execError(err))
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.HasSuffix(name, "NOTES.txt") {
			notesOut.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), "---")))
	}
	os.Stdout.Write(out.Bytes())
	if notes {
		fmt.Printf("NOTES:\n%s\n", strings.TrimRight(notesOut.String(), "\n"))
	}
}
