package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is what the binary says of its build: the main module's
// version, the VCS revision it was built from (with "-dirty" when the tree
// had changes) and the Go version. Unknown values are "unknown" (a build
// without VCS stamping, `go build -buildvcs=false`, has no revision).
type BuildInfo struct {
	Version   string
	Revision  string
	GoVersion string
}

// ReadBuildInfo reads the binary's build information.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := bi.Main.Version; v != "" {
		b.Version = v
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "-dirty"
	}
	return b
}

// buildInfoGauge is xnic_build_info: always 1, the build in its labels.
func buildInfoGauge(b BuildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "xnic_build_info",
		Help: "The xnic binary's build: module version, VCS revision and Go version (always 1).",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}
