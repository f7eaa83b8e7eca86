package devkube

import "syscall"

// sysProcAttr puts each process in a process group of its own, so a Ctrl-C
// in the terminal reaches only Salve, which then stops the control plane in
// order; and has the kernel SIGKILL the processes when their parent dies
// without calling Stop (a test's -timeout panic, a kill -9 of salve dev).
// Strictly, Pdeathsig fires when the OS thread that started them exits; the
// Go runtime only ends a thread when a goroutine exits while locked to it,
// which nothing that starts a cluster does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
