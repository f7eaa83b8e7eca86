//go:build !linux

package devkube

import "syscall"

// sysProcAttr is the default elsewhere: without Linux's Pdeathsig the
// processes stay in Salve's process group, so a Ctrl-C that kills Salve
// also ends them.
func sysProcAttr() *syscall.SysProcAttr { return nil }
