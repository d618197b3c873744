package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time with
// -ldflags "-X main.version=… -X main.commit=…"; otherwise they come from the
// module's build info.
var (
	version = ""
	commit  = ""
)

func buildVersion() (v, c string) {
	v, c = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

var versionCmd = &cmdSpec{
	name:     "version",
	summary:  "Prints the version, the commit it was built from, the Go version and the platform.",
	examples: []string{"unhidra version", "unhidra --version"},
}

func runVersion(e env) error {
	if _, err := versionCmd.parse(e, nil, e.args); err != nil {
		return err
	}
	v, c := buildVersion()
	fmt.Fprintf(e.stdout, "unhidra %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
