// Package tests holds xnic's end-to-end tests: each builds a real veth lab
// (engine/lab), runs the data path on it and checks what arrives. They need
// root; outside CI they skip and say why, under CI=true they fail instead.
package tests
