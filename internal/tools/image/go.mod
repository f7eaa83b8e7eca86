// Assembles Salve's container image (scripts/image.sh, `task image`) with
// go-containerregistry (Apache-2.0), kept out of Salve's own go.mod.
module github.com/salve-sre/salve/internal/tools/image

go 1.26.8

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
