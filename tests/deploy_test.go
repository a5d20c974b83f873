package tests

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/xnic/xnic/engine/config"
)

// xnicCaps are the capabilities xnic needs, as measured: loading the XDP
// program and its maps, attaching it, AF_XDP sockets, UMEM registration.
var xnicCaps = []string{"BPF", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "PERFMON"}

// unitKeys reads a systemd unit's key=value lines (all sections).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not key=value: %q", path, l)
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// TestSystemdUnit: deploy/xnic.service runs xnic serve as the user xnic
// with the five capabilities and no others, /run/xnic, bpffs and the
// memlock limit, and systemd-analyze verify finds nothing to say about it.
func TestSystemdUnit(t *testing.T) {
	const unit = "../deploy/xnic.service"
	k := unitKeys(t, unit)
	one := func(key string) string {
		if len(k[key]) != 1 {
			t.Errorf("%s: want one %s=, got %q", unit, key, k[key])
			return ""
		}
		return k[key][0]
	}
	var caps []string
	for _, c := range xnicCaps {
		caps = append(caps, "CAP_"+c)
	}
	for key, want := range map[string]string{
		"User": "xnic", "Group": "xnic", "RuntimeDirectory": "xnic", "RuntimeDirectoryMode": "0700",
		"LimitMEMLOCK": "infinity", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/sys/fs/bpf",
		"AmbientCapabilities": strings.Join(caps, " "), "CapabilityBoundingSet": strings.Join(caps, " "),
	} {
		if got := one(key); got != want {
			t.Errorf("%s: %s=%s, want %s", unit, key, got, want)
		}
	}
	if s := one("ExecStart"); !strings.HasPrefix(s, "/usr/local/bin/xnic serve --config /etc/xnic/xnic.yaml") ||
		!strings.Contains(s, " --reuse-pins") {
		t.Errorf("ExecStart=%s: want serve --config /etc/xnic/xnic.yaml with --reuse-pins (Restart= after a crash must not stop at the dead engine's pins)", s)
	}
	if s := one("ExecStartPre"); !strings.HasPrefix(s, "+") || !strings.Contains(s, "mount -t bpf") ||
		!strings.Contains(s, "install -d -o xnic -g xnic -m 0700 /sys/fs/bpf/xnic") {
		t.Errorf("ExecStartPre=%s: want bpffs mounted and /sys/fs/bpf/xnic made xnic's, as root", s)
	}
	if s := one("RestrictAddressFamilies"); !strings.Contains(s, "AF_XDP") || !strings.Contains(s, "AF_NETLINK") {
		t.Errorf("RestrictAddressFamilies=%s: AF_XDP and AF_NETLINK are needed", s)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed: vagrant/provision.sh installs systemd")
		}
		t.Skip("systemd-analyze is not installed (Debian's systemd package; vagrant/provision.sh installs it)")
	}
	// verify refuses an ExecStart that is not executable: point it at a
	// binary that is, and check the rest as it is.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "xnic.service")
	os.WriteFile(tmp, bytes.ReplaceAll(b, []byte("/usr/local/bin/xnic "), []byte(self+" ")), 0o644)
	cmd := exec.Command(sa, "verify", tmp)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// A misspelt key is only a warning to systemd; make sure the check
	// above would see one.
	os.WriteFile(tmp, bytes.Replace(bytes.ReplaceAll(b, []byte("/usr/local/bin/xnic "), []byte(self+" ")),
		[]byte("RestartSec="), []byte("RestartSecs="), 1), 0o644)
	if out, _ := exec.Command(sa, "verify", tmp).CombinedOutput(); !bytes.Contains(out, []byte("RestartSecs")) {
		t.Errorf("systemd-analyze verify says nothing of a misspelt key: %q", out)
	}
}

// k8sObject is the part of a Kubernetes object the test reads.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable int `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				HostNetwork bool `yaml:"hostNetwork"`
				Containers  []struct {
					Name  string   `yaml:"name"`
					Image string   `yaml:"image"`
					Args  []string `yaml:"args"`
					Ports []struct {
						ContainerPort int `yaml:"containerPort"`
					} `yaml:"ports"`
					SecurityContext struct {
						Privileged   *bool `yaml:"privileged"`
						Capabilities struct {
							Add  []string `yaml:"add"`
							Drop []string `yaml:"drop"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name     string `yaml:"name"`
					HostPath *struct {
						Path string `yaml:"path"`
					} `yaml:"hostPath"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestDaemonSet: deploy/kubernetes/daemonset.yaml is Kubernetes YAML with
// a DaemonSet on the host network, with the capabilities and not
// privileged, bpffs, /run/xnic and the ConfigMap mounted, Prometheus
// annotations matching the --metrics-addr port; the ConfigMap's xnic.yaml
// is a good config.
func TestDaemonSet(t *testing.T) {
	const path = "../deploy/kubernetes/daemonset.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(false)
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", path, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: an object without apiVersion, kind or name: %+v", path, o)
		}
		objs[o.Kind] = o
	}
	ds, ok := objs["DaemonSet"]
	if !ok || ds.APIVersion != "apps/v1" {
		t.Fatalf("%s: no apps/v1 DaemonSet among %v", path, objs)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != "RollingUpdate" || u.RollingUpdate.MaxUnavailable != 1 {
		t.Errorf("update strategy %+v: want RollingUpdate, maxUnavailable 1", u)
	}
	pod := ds.Spec.Template
	if !pod.Spec.HostNetwork {
		t.Error("hostNetwork: want true")
	}
	if a := pod.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "9464" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("annotations %v: want prometheus.io/scrape true, port 9464, path /metrics", a)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers: %+v", pod.Spec.Containers)
	}
	c := pod.Spec.Containers[0]
	if i := slices.Index(c.Args, "--metrics-addr"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != ":9464" ||
		c.Args[0] != "serve" || !slices.Contains(c.Args, "/etc/xnic/xnic.yaml") {
		t.Errorf("args %q: want serve --config /etc/xnic/xnic.yaml --metrics-addr :9464", c.Args)
	}
	if !slices.Contains(c.Args, "--reuse-pins") {
		t.Errorf("args %q: want --reuse-pins, so that a restarted pod takes over the pins of the one that crashed", c.Args)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("ports %+v: want 9464", c.Ports)
	}
	sc := c.SecurityContext
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: want false")
	}
	if add := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(add, slices.Sorted(slices.Values(xnicCaps))) ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities %+v: want drop ALL, add %v", sc.Capabilities, xnicCaps)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]int{}
	for i, v := range pod.Spec.Volumes {
		vols[v.Name] = i
	}
	for mp, want := range map[string]string{"/sys/fs/bpf": "host /sys/fs/bpf", "/run/xnic": "host /run/xnic", "/etc/xnic": "configmap"} {
		name, ok := mounts[mp]
		if !ok {
			t.Errorf("no volume mounted at %s", mp)
			continue
		}
		v := pod.Spec.Volumes[vols[name]]
		switch {
		case want == "configmap" && v.ConfigMap != nil:
			if cm, ok := objs["ConfigMap"]; !ok || cm.Metadata.Name != v.ConfigMap.Name {
				t.Errorf("%s: configMap %q is not in the file", mp, v.ConfigMap.Name)
			}
		case want != "configmap" && v.HostPath != nil && "host "+v.HostPath.Path == want:
		default:
			t.Errorf("%s: volume %+v, want %s", mp, v, want)
		}
	}
	cfg, ok := objs["ConfigMap"].Data["xnic.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no xnic.yaml")
	}
	if _, err := config.Parse("configmap/xnic.yaml", []byte(cfg)); err != nil {
		t.Errorf("the ConfigMap's xnic.yaml: %v", err)
	}
}

// TestDockerfile: the image is built from a static binary of ./cmd/xnic
// (CGO_ENABLED=0) in a builder stage and copied into a minimal image; the
// same build here gives a binary with no interpreter and no shared
// libraries.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, runs []string
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(l, "FROM "); ok {
			froms = append(froms, s)
		}
		if s, ok := strings.CutPrefix(l, "RUN "); ok {
			runs = append(runs, s)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:") || !strings.HasSuffix(froms[0], " AS build") ||
		!(strings.Contains(froms[1], "distroless/static") || froms[1] == "scratch") {
		t.Errorf("stages %q: want a golang builder, then distroless static or scratch", froms)
	}
	if !slices.ContainsFunc(runs, func(r string) bool {
		return strings.HasPrefix(r, "CGO_ENABLED=0 go build") && strings.HasSuffix(r, " ./cmd/xnic")
	}) {
		t.Errorf("RUN lines %q: want CGO_ENABLED=0 go build ... ./cmd/xnic", runs)
	}
	if !strings.Contains(string(b), "COPY --from=build /out/xnic ") {
		t.Error("the final stage does not copy the binary from the builder")
	}
	if testing.Short() {
		t.Skip("-short: not building the static binary")
	}
	bin := filepath.Join(t.TempDir(), "xnic")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/xnic")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/xnic: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the CGO_ENABLED=0 binary is dynamically linked (program header %v)", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the CGO_ENABLED=0 binary needs %v", libs)
	}
}
