package codec

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/crypto"
)

// fuzzIdentity decrypts the encrypted seeds in testdata/fuzz. It is a test
// key that protects nothing.
const fuzzIdentity = "AGE-SECRET-KEY-158UPFUVM309FQ63KEJ3YXZKFUZJAEC872UQW36G2Q0PFS94ZYJLSHF8Z4X" // #nosec G101 -- a throwaway test key

func fuzzIDs(t testing.TB) []age.Identity {
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		t.Fatal(err)
	}
	return []age.Identity{id}
}

// maxFuzzOutput bounds what one input may decode to: a few bytes of zstd
// can claim gigabytes, and the reader must stream them, not the test.
const maxFuzzOutput = 32 << 20

// FuzzNewReader feeds arbitrary bytes, often starting with the lz4, zstd or
// age magic, to the object decoder wal-fetch and restore use. It must never
// panic nor hang: it returns an error, or data. An object with no known
// magic is stored as is, so it must come back unchanged.
func FuzzNewReader(f *testing.F) {
	ids := fuzzIDs(f)
	plain := []byte("walvault fuzz seed: WAL-like text WAL-like text WAL-like text\n")
	for _, s := range []Settings{{Compression: LZ4, Concurrency: 1}, {Compression: Zstd, Concurrency: 1}, {Compression: None},
		{Compression: LZ4, Concurrency: 1, Recipients: []age.Recipient{ids[0].(*age.X25519Identity).Recipient()}}} {
		enc := encode(f, s, plain)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add(append([]byte(nil), lz4Magic...))
	f.Add(append([]byte(nil), zstdMagic...))
	f.Add([]byte("age-encryption.org/v1\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b), ids)
		if err != nil {
			if r != nil {
				t.Fatal("NewReader returned a reader with an error")
			}
			return
		}
		defer r.Close()
		out, err := io.ReadAll(io.LimitReader(r, maxFuzzOutput))
		magic := bytes.HasPrefix(b, lz4Magic) || bytes.HasPrefix(b, zstdMagic) || bytes.HasPrefix(b, []byte("age-encryption.org/v1\n"))
		if !magic && (err != nil || !bytes.Equal(out, b)) {
			t.Fatalf("an object without a known magic must pass through unchanged: got %d bytes, err %v", len(out), err)
		}
	})
}

// FuzzCodecIntegrity encodes data in every mode, then decodes it whole,
// truncated at a fuzzed point and with one fuzzed bit flipped. Whole, it
// must come back equal. Truncated, a compressed or encrypted object must
// fail: a short download must never pass for a complete one. Flipped, it
// must fail or still decode to the original: never to other bytes without
// an error.
func FuzzCodecIntegrity(f *testing.F) {
	ids := fuzzIDs(f)
	recipient := ids[0].(*age.X25519Identity).Recipient()
	f.Add([]byte("a small WAL record"), uint8(0), uint32(7), uint32(9))
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3}, 700), uint8(1), uint32(1000), uint32(12345))
	f.Add(bytes.Repeat([]byte("x"), 3000), uint8(4), uint32(2000), uint32(2000))
	f.Add([]byte{}, uint8(5), uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, cut, flip uint32) {
		if len(data) > 64<<10 {
			data = data[:64<<10] // big inputs only slow the fuzzer down
		}
		s := Settings{Concurrency: 1}
		switch mode % 3 {
		case 0:
			s.Compression = LZ4
		case 1:
			s.Compression = Zstd
		case 2:
			s.Compression = None
		}
		if mode&4 != 0 {
			s.Recipients = []age.Recipient{recipient}
		}
		enc := encode(t, s, data)
		got, err := decode(enc, ids)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%+v: round trip of %d bytes: got %d bytes, err %v", s, len(data), len(got), err)
		}
		if s.Compression == None && len(s.Recipients) == 0 || len(enc) == 0 {
			return // stored as is: only the checksum in the metadata can tell
		}
		// Cut or damaged inside its magic, an object reads as one stored
		// as is: only the checksum in the metadata can tell (wal-fetch and
		// restore check it), so the codec is held to account past it.
		magic := len(lz4Magic)
		if len(s.Recipients) > 0 {
			magic = len(crypto.Header)
		}
		short := enc[:int(cut)%len(enc)]
		if got, err := decode(short, ids); err == nil && len(short) >= magic {
			t.Fatalf("%+v: object truncated from %d to %d bytes decoded without an error (%d bytes out)", s, len(enc), len(short), len(got))
		}
		bad := bytes.Clone(enc)
		at := int(flip/8) % len(bad)
		if at < magic {
			return
		}
		bad[at] ^= 1 << (flip % 8)
		if got, err := decode(bad, ids); err == nil && !bytes.Equal(got, data) {
			t.Fatalf("%+v: a flipped bit at byte %d decoded to different data without an error", s, at)
		} else if err != nil && !errors.Is(err, ErrCorrupt) && len(s.Recipients) == 0 {
			t.Fatalf("%+v: a flipped bit gave %v, which does not wrap ErrCorrupt", s, err)
		}
	})
}
