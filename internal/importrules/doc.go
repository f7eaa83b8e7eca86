// Package importrules holds the test that keeps deterministic packages free of I/O imports.
package importrules
