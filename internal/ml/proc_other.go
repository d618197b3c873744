//go:build !linux

package ml

import "syscall"

// procAttr puts the worker in a process group of its own, so stopping it
// stops its children too.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
