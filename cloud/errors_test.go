package cloud

import "testing"

func TestCheckMetadata(t *testing.T) {
	if err := CheckMetadata(map[string]string{"a": "b", "walvault-x9": "v a l"}); err != nil {
		t.Error(err)
	}
	if err := CheckMetadata(nil); err != nil {
		t.Error(err)
	}
}
