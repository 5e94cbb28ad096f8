//go:build walvault_front

package main

// The front (see front.go) links the one backend whose package
// initialisation is cheap: S3's, about 1 ms. The Azure SDK costs ~2 ms
// (it brings Apache Arrow, whose xxh3 probes the CPU at start-up, slow
// under a hypervisor) and the GCS SDK ~8 ms (gRPC, xDS and protobuf
// registrations): an azure:// or gs:// store is handed over to
// walvault-full.
import _ "github.com/walvault/walvault/cloud/s3" // s3://
