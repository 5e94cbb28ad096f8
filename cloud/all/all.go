// Package all registers the SDK backends with package cloud: s3://, gs://
// and azure:// (alias azblob://). They live in packages of their own, and
// are registered here on request rather than from init, so that code which
// needs only the cloud.Store interface links no SDK.
package all

import (
	"sync"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/azure"
	"github.com/walvault/walvault/cloud/gcs"
	"github.com/walvault/walvault/cloud/s3"
)

var once sync.Once

// Register makes every SDK backend available to cloud.Open. Programs call
// it before opening a store; it is safe to call more than once, and from
// several goroutines.
func Register() {
	once.Do(func() {
		cloud.Register("s3", s3.Open)
		cloud.Register("gs", gcs.Open)
		cloud.Register("azure", azure.Open)
		cloud.Register("azblob", azure.Open)
	})
}
