package tests

import (
	"os"
	"testing"
)

var tempDirs []string

func mkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "xnic-tests-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
