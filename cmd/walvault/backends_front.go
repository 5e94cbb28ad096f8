//go:build walvault_front

package main

// The front (see front.go) links the backends whose package initialisation
// is cheap: about 1 ms each for the S3 and Azure SDKs, against 8 ms for
// the GCS SDK's gRPC, xDS and protobuf registrations. A gs:// store is
// handed over to walvault-full.
import (
	_ "github.com/walvault/walvault/cloud/azure" // azure://, azblob://
	_ "github.com/walvault/walvault/cloud/s3"    // s3://
)
