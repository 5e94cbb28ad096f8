package systemd

import "testing"

// The hardening is left out where it would hide the file:// store or
// PostgreSQL's socket from the command.
func TestHardeningExceptions(t *testing.T) {
	if why := sharedTmpNeeded("file:///tmp/store", ""); why == "" {
		t.Error("a store in /tmp keeps PrivateTmp")
	}
	if why := sharedTmpNeeded("s3://b/p", "host=/tmp port=5433"); why == "" {
		t.Error("a socket in /tmp keeps PrivateTmp")
	}
	if why := systemDirNeeded("file:///etc/backups"); why == "" {
		t.Error("a store in /etc keeps ProtectSystem")
	}
	if systemDirNeeded("file:///var/backups") != "" || systemDirNeeded("file:///usrdata/x") != "" || under("/tmpfoo/x", "/tmp", "/var/tmp") {
		t.Error("hardening dropped for a store elsewhere")
	}
}
