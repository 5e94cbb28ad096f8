package all

import (
	"slices"
	"strings"
	"testing"

	"github.com/walvault/walvault/cloud"
)

// TestRegistry: every backend linked here is registered once, with
// schemes and settings no other has, named as walvault names settings.
func TestRegistry(t *testing.T) {
	var names, schemes, settings []string
	for _, b := range cloud.Backends() {
		names = append(names, b.Name())
		for _, s := range b.Schemes {
			if slices.Contains(schemes, s) {
				t.Errorf("scheme %s:// registered twice", s)
			}
			schemes = append(schemes, s)
		}
		endpoints := 0
		for _, s := range b.Settings {
			if slices.Contains(settings, s.Name) {
				t.Errorf("setting %s registered twice", s.Name)
			}
			settings = append(settings, s.Name)
			if s.Name != strings.ToLower(s.Name) || strings.ContainsAny(s.Name, " _") || s.Help == "" {
				t.Errorf("setting %q: lower case words joined by '-', with help", s.Name)
			}
			if s.Endpoint {
				endpoints++
				if !s.Secret || !s.Reading || s.Switch {
					t.Errorf("endpoint setting %s: an endpoint may carry credentials (Secret) and wal-fetch needs it (Reading)", s.Name)
				}
			}
		}
		if endpoints > 1 {
			t.Errorf("backend %s has %d endpoint settings", b.Name(), endpoints)
		}
	}
	for _, want := range []string{"azure", "file", "gs", "s3"} {
		if !slices.Contains(names, want) {
			t.Errorf("backends %v: no %s", names, want)
		}
	}
	if cloud.EnvVar("s3-path-style") != "WALVAULT_S3_PATH_STYLE" {
		t.Errorf("EnvVar(s3-path-style) = %s", cloud.EnvVar("s3-path-style"))
	}
}

// TestEndpoint: where each backend's store is reached, from its endpoint
// setting, else from the variables its SDK reads.
func TestEndpoint(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tt := range []struct {
		store, setting string
		getenv         func(string) string
		want           string
	}{
		{"s3://b/p", "http://flag:1", env("AWS_ENDPOINT_URL_S3", "http://x:1"), "http://flag:1"},
		{"s3://b/p", "", env("AWS_ENDPOINT_URL_S3", "http://s3:1", "AWS_ENDPOINT_URL", "http://all:1"), "http://s3:1"},
		{"s3://b/p", "", env("AWS_ENDPOINT_URL", "http://all:1"), "http://all:1"},
		{"s3://b/p", "", env(), ""},
		{"gs://b/p", "", env("STORAGE_EMULATOR_HOST", "127.0.0.1:4443", "AWS_ENDPOINT_URL", "http://all:1"), "127.0.0.1:4443"},
		{"gs://b/p", "http://flag:2/storage/v1/", env("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"), "http://flag:2/storage/v1/"},
		{"azure://c/p", "", env("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=SECRET;BlobEndpoint=http://h:1/acc"), "http://h:1/acc"},
		{"azure://c/p", "", env("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=SECRET"), ""},
		{"azblob://c/p", "", env("AZURE_STORAGE_ACCOUNT", "acct"), "https://acct.blob.core.windows.net"},
		{"azure://c/p", "http://flag:3/a", env("AZURE_STORAGE_ACCOUNT", "acct"), "http://flag:3/a"},
		{"file:///srv/a", "", env("AWS_ENDPOINT_URL", "http://all:1"), ""},
		{"nope://b/p", "", env("AWS_ENDPOINT_URL", "http://all:1"), ""},
	} {
		set := cloud.Values{}
		if loc, err := cloud.ParseURL(tt.store); err == nil {
			if b, ok := cloud.BackendOf(loc.Scheme); ok && b.EndpointSetting() != "" {
				set[b.EndpointSetting()] = tt.setting
			}
		}
		if got := cloud.Endpoint(tt.store, set, tt.getenv); got != tt.want {
			t.Errorf("%s setting %q: %q, want %q", tt.store, tt.setting, got, tt.want)
		}
	}
}
