package main

import "github.com/walvault/walvault/cloud/all"

// The SDK backends (s3://, gs://, azure://) are registered here, before any
// command runs (tests included), rather than by package cloud itself: code
// that needs only the Store interface links no SDK.
func init() { all.Register() }
