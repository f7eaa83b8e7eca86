package testenv

import "syscall"

// kubeSysProcAttr kills the control plane's processes if the test binary
// dies without running cleanups (a -timeout panic, a kill).
func kubeSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
