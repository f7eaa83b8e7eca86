package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// secretFiles lets every secret setting --NAME also be read from a file,
// --NAME-file (or SALVE_NAME_FILE), so Vault Agent, a CSI driver or a
// Kubernetes Secret volume can render it and it never sits in a process
// listing or an environment dump.
type secretFiles []*secretFile

type secretFile struct {
	name  string
	value *string
	path  string
}

// add registers --name (the value) and --name-file (a file holding it).
func (s *secretFiles) add(f *pflag.FlagSet, value *string, name, usage string) {
	sf := &secretFile{name: name, value: value}
	f.StringVar(value, name, "", usage)
	f.StringVar(&sf.path, name+"-file", "", "file holding --"+name+" (read at start; surrounding whitespace ignored)")
	*s = append(*s, sf)
}

// usageError is a mistake in how salve was called: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// resolve reads the files given. Both a value and a file, an unreadable
// file or an empty one are errors that name the flag.
func (s secretFiles) resolve() error {
	for _, sf := range s {
		if sf.path == "" {
			continue
		}
		if *sf.value != "" {
			return usageError{fmt.Errorf("--%s and --%s-file are both set: give one", sf.name, sf.name)}
		}
		b, err := os.ReadFile(sf.path)
		if err != nil {
			return usageError{fmt.Errorf("--%s-file: %w", sf.name, err)}
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return usageError{fmt.Errorf("--%s-file: %s is empty", sf.name, sf.path)}
		}
		*sf.value = v
	}
	return nil
}
