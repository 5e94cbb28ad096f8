package codec

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/crypto"
)

// sample is compressible like WAL: repeated structure with some noise.
func sample(t testing.TB, n int) []byte {
	b := make([]byte, n)
	noise := make([]byte, n/16+1)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		if i%16 == 0 {
			b[i] = noise[i/16]
		} else {
			b[i] = byte(i / 4096)
		}
	}
	return b
}

func encode(t testing.TB, s Settings, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decode(stored []byte, ids []age.Identity) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(stored), ids)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestRoundTripEveryCombination(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 100_000, 5 << 20} {
		plain := sample(t, size)
		for _, comp := range []Compression{LZ4, Zstd, None} {
			for _, encrypted := range []bool{false, true} {
				t.Run(fmt.Sprintf("%d/%s/enc=%v", size, comp, encrypted), func(t *testing.T) {
					s := Settings{Compression: comp}
					var ids []age.Identity
					if encrypted {
						s.Recipients = []age.Recipient{id.Recipient()}
						ids = []age.Identity{id}
					}
					stored := encode(t, s, plain)
					if encrypted != crypto.IsEncrypted(stored) {
						t.Fatalf("encrypted=%v but header says %v", encrypted, crypto.IsEncrypted(stored))
					}
					if !encrypted && comp != None && size > 0 && !bytes.HasPrefix(stored, map[Compression][]byte{LZ4: lz4Magic, Zstd: zstdMagic}[comp]) {
						t.Fatalf("no %s frame magic", comp)
					}
					if size >= 100_000 && comp != None && len(stored) >= len(plain) {
						t.Fatalf("%s did not compress: %d -> %d", comp, len(plain), len(stored))
					}
					got, err := decode(stored, ids)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("round trip changed the data (%d -> %d bytes)", len(plain), len(got))
					}
				})
			}
		}
	}
}

func TestLevels(t *testing.T) {
	plain := sample(t, 1<<20)
	for _, s := range []Settings{{Compression: LZ4, Level: 9}, {Compression: Zstd, Level: 19}, {Compression: Zstd, Level: 1}, {Compression: LZ4, Level: 1, Concurrency: 1}} {
		got, err := decode(encode(t, s, plain), nil)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%+v: %v", s, err)
		}
	}
}

func TestCorruptionIsDetected(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	// Mostly random, so that a flipped byte cannot land in a back-reference
	// that happens to copy identical bytes (then the output would be right).
	plain := make([]byte, 300_000)
	if _, err := rand.Read(plain); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(plain); i += 3 {
		plain[i] = 0
	}
	for _, comp := range []Compression{LZ4, Zstd} {
		for _, encrypted := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/enc=%v", comp, encrypted), func(t *testing.T) {
				s := Settings{Compression: comp}
				var ids []age.Identity
				if encrypted {
					s.Recipients = []age.Recipient{id.Recipient()}
					ids = []age.Identity{id}
				}
				stored := encode(t, s, plain)
				flipped := append([]byte(nil), stored...)
				flipped[len(flipped)*2/3] ^= 0x01
				if _, err := decode(flipped, ids); err == nil {
					t.Fatal("a flipped byte decoded without error")
				}
				truncated := stored[:len(stored)-len(stored)/3]
				if _, err := decode(truncated, ids); err == nil {
					t.Fatal("a truncated object decoded without error")
				}
				if encrypted {
					if _, err := decode(stored, []age.Identity{other}); !errors.Is(err, crypto.ErrWrongKey) {
						t.Fatalf("wrong identity: got %v, want ErrWrongKey", err)
					}
					if _, err := decode(stored, nil); !errors.Is(err, crypto.ErrNoIdentity) {
						t.Fatalf("no identity: got %v, want ErrNoIdentity", err)
					}
				}
			})
		}
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Compression{"": LZ4, "lz4": LZ4, "zstd": Zstd, "none": None} {
		if got, err := ParseCompression(in); err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseCompression("gzip"); err == nil {
		t.Error("gzip accepted")
	}
}

// TestTapSeesEncodedStream: the writer's tap gets the stream under the
// encryption (the stored bytes themselves when not encrypted) and the
// reader's tap gets the same bytes back, all of them by the plaintext's EOF.
func TestTapSeesEncodedStream(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := sample(t, 3<<20)
	for _, c := range []Compression{LZ4, Zstd, None} {
		for _, encrypt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s-encrypt=%v", c, encrypt), func(t *testing.T) {
				s := Settings{Compression: c, NoFrameChecksum: true}
				if encrypt {
					s.Recipients = []age.Recipient{id.Recipient()}
				}
				var stored, wtap bytes.Buffer
				w, err := NewWriterTap(&stored, s, &wtap)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(plain); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if !encrypt && !bytes.Equal(wtap.Bytes(), stored.Bytes()) {
					t.Fatal("unencrypted: the tap is not the stored bytes")
				}
				if c == None && !bytes.Equal(wtap.Bytes(), plain) {
					t.Fatal("no compression: the tap is not the plain bytes")
				}
				var rtap bytes.Buffer
				rd, err := NewReaderTap(bytes.NewReader(stored.Bytes()), []age.Identity{id}, &rtap)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rd)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("read back %d bytes, %v", len(got), err)
				}
				if !bytes.Equal(rtap.Bytes(), wtap.Bytes()) {
					t.Fatalf("reader's tap %d bytes, writer's %d", rtap.Len(), wtap.Len())
				}
			})
		}
	}
}

// TestSmallBlocks: the WAL path's lz4 frames (64 KiB blocks, one goroutine,
// no frame checksum) declare their block size and read back with the
// ordinary reader, whichever way the input was written.
func TestSmallBlocks(t *testing.T) {
	plain := sample(t, 3<<20+12345)
	for _, tc := range []struct {
		name  string
		s     Settings
		bdMax byte // the frame descriptor's block maximum size code
	}{
		{"default", Settings{Compression: LZ4}, 6},
		{"small", Settings{Compression: LZ4, SmallBlocks: true, Concurrency: 1, NoFrameChecksum: true}, 4},
		{"small-concurrent", Settings{Compression: LZ4, SmallBlocks: true}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := encode(t, tc.s, plain)
			if !bytes.HasPrefix(stored, lz4Magic) {
				t.Fatal("no lz4 frame magic")
			}
			if got := stored[5] >> 4 & 7; got != tc.bdMax {
				t.Fatalf("block size code %d, want %d", got, tc.bdMax)
			}
			back, err := decode(stored, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, plain) {
				t.Fatal("round trip changed the content")
			}
			// One big Write (the mapped path) and io.Copy (ReadFrom) make
			// the same stream.
			var viaCopy bytes.Buffer
			w, err := NewWriter(&viaCopy, tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, bytes.NewReader(plain)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(viaCopy.Bytes(), stored) {
				t.Fatal("io.Copy and Write encoded the same input differently")
			}
		})
	}
}
