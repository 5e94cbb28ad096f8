package azure

import (
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	const key = "c2VjcmV0LWtleS1ieXRlcw=="
	for _, tc := range []struct {
		in, endpoint, account string
		wantErr               string
	}{
		{in: "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";EndpointSuffix=core.chinacloudapi.cn",
			endpoint: "https://acct.blob.core.chinacloudapi.cn", account: "acct"},
		{in: "AccountName=acct;AccountKey=" + key, endpoint: "https://acct.blob.core.windows.net", account: "acct"},
		{in: "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;SharedAccessSignature=sv=1&sig=abc",
			endpoint: "http://127.0.0.1:1/devstoreaccount1"},
		// As check and the agent read it (a trailing ';', keys in any case).
		{in: "DefaultEndpointsProtocol=http;AccountKey=" + key + ";BlobEndpoint=http://h:1/acc;", endpoint: "http://h:1/acc"},
		{in: "accountkey=" + key + ";blobendpoint=http://h:1/acc", endpoint: "http://h:1/acc"},
		{in: "UseDevelopmentStorage=true", endpoint: "http://127.0.0.1:10000/devstoreaccount1", account: "devstoreaccount1"},
		{in: "AccountName=acct", wantErr: "neither AccountKey nor SharedAccessSignature"},
		{in: "garbage;AccountKey=" + key, wantErr: "malformed"},
		{in: "AccountKey=" + key, wantErr: "neither AccountName nor BlobEndpoint"},
	} {
		cs, err := parseConnectionString(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v; want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Errorf("error quotes the key: %v", err)
			}
			continue
		}
		if err != nil || cs.endpoint != tc.endpoint || cs.account != tc.account {
			t.Errorf("%q: %+v, %v; want endpoint %s account %s", tc.in, cs, err, tc.endpoint, tc.account)
		}
	}
}

func TestAzureMetadataNames(t *testing.T) {
	in := map[string]string{"walvault-format": "1", "a-b-c": "x", "plain": "y"}
	out := metaOut(in)
	for k := range out {
		for _, c := range k {
			if c == '-' {
				t.Errorf("Azure metadata name %q is not an identifier", k)
			}
		}
	}
	// Azure may hand names back with other case (HTTP header canonicalisation).
	back := map[string]*string{}
	for k, v := range out {
		back[strings.ToUpper(k[:1])+k[1:]] = v
	}
	got := metaIn(back)
	if len(got) != len(in) {
		t.Fatalf("round trip %v -> %v", in, got)
	}
	for k, v := range in {
		if got[k] != v {
			t.Errorf("round trip %v -> %v", in, got)
		}
	}
}
