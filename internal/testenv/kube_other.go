//go:build !linux

package testenv

import "syscall"

func kubeSysProcAttr() *syscall.SysProcAttr { return nil }
