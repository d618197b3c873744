//go:build linux

package ml

import "syscall"

// procAttr puts the worker in a process group of its own (so stopping it
// stops its children too) and has the kernel kill it when the server dies,
// so a server killed -9 leaves no worker behind holding the socket.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
