//go:build !walvault_front

package main

// The SDK backends (s3://, gs://, azure://) are linked here, registering
// themselves before any command runs (tests included), rather than by
// package cloud itself: code that needs only the Store interface links no
// SDK.
import _ "github.com/walvault/walvault/cloud/all"
