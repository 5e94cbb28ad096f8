package cloud

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"s3://bucket/prefix", "s3://bucket/prefix"},
		{"https://KEY:SECRET@s3.example.com:9000", "https://REDACTED@s3.example.com:9000"},
		{"https://acct.blob.core.windows.net/c?sv=2024&sig=SECRET", "https://acct.blob.core.windows.net/c?REDACTED"},
		{"KEY:SECRET@host:9000", "REDACTED"},
		{"https://KEY:SECRET@ho%zz", "https://REDACTED"},
		{"127.0.0.1:9000", "127.0.0.1:9000"},
		{"file:///var/lib/walvault", "file:///var/lib/walvault"},
	}
	for _, tt := range tests {
		got := Redact(tt.in)
		if got != tt.want || strings.Contains(got, "SECRET") {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
