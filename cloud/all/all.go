// Package all links every store backend into the program that imports it:
// each backend package registers itself with package cloud from init.
// Code that needs only the cloud.Store interface (file:// included) does
// not import it, and links no SDK.
//
// Adding a backend is its package (see cloud.Backend) and one import line
// here.
package all

import (
	// The backends, each registering itself.
	_ "github.com/walvault/walvault/cloud/azure" // azure://, azblob://
	_ "github.com/walvault/walvault/cloud/gcs"   // gs://
	_ "github.com/walvault/walvault/cloud/s3"    // s3://
)
